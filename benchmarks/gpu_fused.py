"""GPU benchmark of the fused "linear + f(p)" loss: ours (eager and torch.compile) vs naive vs
Liger-Kernel's fused linear cross-entropy vs cut-cross-entropy, forward+backward, bf16.

Memory: torch.cuda.max_memory_allocated beyond the inputs and weights (reset after they are made);
time: median of 3 runs after one warm-up (CUDA events). Liger and cut-cross-entropy are imported lazily
and skipped with a note when missing. Each section is try/except: a failure prints and continues.
Also checks ours against naive (loss and gradient relative error) on the same inputs.

Run (H100, < 2 min):      python benchmarks/gpu_fused.py --out gpu_out/fused
CPU fallback (tiny sizes): python benchmarks/gpu_fused.py --device cpu --out /tmp/gpu_fused_cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path

import torch

import probsft
from probsft.theory.fused import fused_linear_loss


def _naive(obj):
    def fn(h, W, y):                        # the authors' path: full logits, float32 log_softmax
        logp = torch.log_softmax((h @ W.T).float(), -1).gather(-1, y.clamp(min=0)[:, None]).squeeze(-1)
        valid = y != -100
        vals = torch.where(valid, obj.f_of_logp(logp), torch.zeros_like(logp))
        return vals.sum() / valid.sum().clamp(min=1)
    return fn


def _methods(obj, chunk):
    yield "naive", _naive(obj)
    yield "ours", lambda h, W, y: fused_linear_loss(h, W, y, obj, chunk_size=chunk)
    yield "ours-compile", lambda h, W, y: fused_linear_loss(h, W, y, obj, chunk_size=chunk,
                                                            impl="compile")
    # CUDA's auto schedule is "token" (float32 [V, H] accumulator); "vocab" trades one more GEMM
    # for no accumulator (theory/fused.py): not yet measured on a GPU
    yield "ours-compile-vocab", lambda h, W, y: fused_linear_loss(h, W, y, obj, chunk_size=chunk,
                                                                  impl="compile", schedule="vocab")
    from probsft.theory import fused_cce

    if fused_cce.available():        # cut-cross-entropy's per-token kernel, f(exp(-l)), any f
        yield "ours-cce", lambda h, W, y: fused_linear_loss(h, W, y, obj, impl="cce")
    if obj.spec != "nll":
        return
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss()
        yield "liger", lambda h, W, y: liger(W, h, y)
    except ImportError as err:
        print(f"  note: liger-kernel not installed ({err}); skipped")
    try:
        from cut_cross_entropy import linear_cross_entropy

        impl = "cce" if torch.cuda.is_available() else "torch_compile"
        yield "cce", lambda h, W, y: linear_cross_entropy(h, W, y, impl=impl)
    except ImportError as err:
        print(f"  note: cut-cross-entropy not installed ({err}); skipped")


class _Meter:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def reset(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = self._status("VmRSS")

    def peak_mib(self):
        if self.cuda:
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (self._status("VmHWM") - self.base) / 2**20

    @staticmethod
    def _status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        return 0

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def bench(fn, h, W, y, meter, reps):
    def step():
        h.grad = W.grad = None
        loss = fn(h, W, y)
        loss.backward()
        return loss

    step()                                                         # warm-up (compile, autotune)
    h.grad = W.grad = None
    meter.reset()
    loss = step()
    peak = meter.peak_mib()
    grads = (h.grad.detach().clone(), W.grad.detach().clone())
    times = []
    for _ in range(reps):
        t0 = meter.now()
        step()
        times.append(meter.now() - t0)
    return float(loss), peak, statistics.median(times), grads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="gpu_out/fused")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        cases = [("qwen2.5-0.5b", 8192, 896, 151_936, 1024), ("llama-3.2-1b", 8192, 2048, 128_256, 1024)]
        dtype = torch.bfloat16
    else:
        cases = [("tiny", 256, 64, 5000, 64)]
        dtype = torch.bfloat16
    meter = _Meter(device)
    rows = []
    print(f"device={device} {torch.cuda.get_device_name() if device.type == 'cuda' else ''} "
          f"torch={torch.__version__} dtype={dtype}")
    for name, N, H, V, chunk in cases:
        for spec in ("nll", "alpha(10)"):   # its naive reference has no thresholds or DFT stop-grad
            obj = probsft.objective(spec)
            try:
                gen = torch.Generator(device="cpu").manual_seed(0)
                h = (torch.randn(N, H, generator=gen) * 0.5).to(device, dtype).requires_grad_()
                W = (torch.randn(V, H, generator=gen) * 0.02).to(device, dtype).requires_grad_()
                y = torch.randint(0, V, (N,), generator=gen).to(device)
                y[: N // 10] = -100
            except Exception:
                traceback.print_exc()
                continue
            ref = None
            for method, fn in _methods(obj, chunk):
                row = {"case": name, "N": N, "H": H, "V": V, "objective": spec, "method": method}
                try:
                    loss, peak, sec, grads = bench(fn, h, W, y, meter, args.reps)
                    row.update(loss=loss, peak_extra_mib=peak, seconds=sec)
                    if method == "naive":
                        ref = (loss, grads, peak, sec)
                    elif ref is not None:
                        row["mem_ratio"], row["time_ratio"] = peak / ref[2], sec / ref[3]
                        row["grad_rel_err"] = max(
                            float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30))
                            for a, b in zip(grads, ref[1]))
                except Exception as err:
                    traceback.print_exc()
                    row["error"] = f"{type(err).__name__}: {err}"[:200]
                rows.append(row)
                print(_fmt(row), flush=True)
            del h, W, y
    print("\nresults:")
    for row in rows:
        print(_fmt(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu_fused.json.tmp"
    tmp.write_text(json.dumps({"device": str(device), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                               time.gmtime()), "torch": torch.__version__,
                               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                               "rows": rows}, indent=1))
    tmp.rename(out / "gpu_fused.json")
    print(f"wrote {out / 'gpu_fused.json'}")


def _fmt(r):
    head = f"{r['case']:13s} N={r['N']:5d} {r['objective']:10s} {r['method']:13s}"
    if "error" in r:
        return f"{head} FAILED {r['error']}"
    return (f"{head} peak {r['peak_extra_mib']:9.1f} MiB ({r.get('mem_ratio', 1.0):6.3f}x)  "
            f"{r['seconds'] * 1e3:9.1f} ms ({r.get('time_ratio', 1.0):5.2f}x)  loss {r['loss']:.5f}"
            f"  grad err {r.get('grad_rel_err', 0.0):.1e}")


if __name__ == "__main__":
    main()
