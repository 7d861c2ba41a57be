"""The fused-loss section of benchmarks/gpu_bench.py: ours vs naive vs cut-cross-entropy vs Liger's
fused linear cross-entropy vs TRL's chunked log-prob head, forward + backward, for several f(p).

Methods (each on the same h [N, H], W [V, H], y [N], 10% of labels masked):
  naive       probsft's reference on full logits: ``obj.loss((h @ W.T).float(), y)`` (every f)
  ours        ``probsft.fused_linear_loss`` with its defaults (impl/schedule/gemm "auto"; bf16 on
              CUDA: the vocabulary schedule, 4 GEMMs, no float32 [V, H] accumulator)
  ours-token  schedule="token" (3 GEMMs and that accumulator: twice the bf16 gradient in memory),
              to weigh the default's memory against its fourth GEMM
  ours-half   the default with token chunks and vocabulary slices half as wide (half their float32
              buffers; more, smaller GEMMs and kernel launches): whether the chunk budget on CUDA
              should shrink to meet "<= 1.5x CCE memory" (by arithmetic the default's buffers put
              the Qwen head near 1.6x CCE's peak), and at what cost in time
  ours-compile   impl="compile" (the per-chunk elementwise work under torch.compile)
  ours-cce    impl="cce": cut-cross-entropy's per-token kernel + f (every f but deft, which needs
              sum q^2 and falls back to our kernel: reported as such)
  cce         cut-cross-entropy ``linear_cross_entropy`` as shipped (NLL, its defaults; Triton on
              CUDA, impl="torch_compile" elsewhere). NLL only: it is measured once per shape and is
              the reference of the targets "ours(f) <= 1.2x CCE time, <= 1.5x CCE memory" for every f
  liger       Liger-Kernel ``LigerFusedLinearCrossEntropyLoss`` (NLL, Triton; CUDA only), once per shape
  trl         TRL's fused LM head ``trl.kernels.ChunkedLogProbFunction`` (its chunk 32768, what
              SFTTrainer's loss_type="nll" runs) -> per-token log p (and log sum q^2 for deft),
              then f through :func:`loss_from_logp`; every f
A baseline that is not installed (or cannot run on the device) gives a row with ``error`` (e.g.
"not installed: No module named 'liger_kernel'"), never a crash.

Measures: peak memory beyond inputs and weights (CUDA: torch.cuda.max_memory_allocated; CPU: RSS
high-water, coarse), time = median of ``reps`` runs after one warm-up (which also compiles), and the
loss / gradient relative error against naive on the same inputs.
"""

from __future__ import annotations

import statistics
import time
import traceback
from pathlib import Path

import torch

import probsft
from probsft.theory import fused_cce
from probsft.theory.fused import fused_linear_loss, plan
from probsft.theory.losses import token_terms

NLL_ONLY = ("cce", "liger")        # measured once per shape, under the spec "nll"
TRL_CHUNK = 32768                  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE (TRL 1.x)


def loss_from_logp(obj, logp, valid, stats=None):
    """Mean of f(p) over counted tokens from a per-token log p [N] that carries a gradient: value
    f(p), d/dlog p = -s_f(p) (Lemma 3.1 through any per-token log-prob kernel)."""
    counted, values, s = token_terms(obj, logp.detach(), valid, stats)
    return (values - s * (logp - logp.detach())).sum() / counted.sum().clamp(min=1)


def _naive(obj):
    return lambda h, W, y: obj.loss((h @ W.T).float(), y)


def _ours(obj, **kw):
    return lambda h, W, y: fused_linear_loss(h, W, y, obj, **kw)


def _ours_half(obj):
    def fn(h, W, y):
        run = plan(W, y.numel())
        return fused_linear_loss(h, W, y, obj, chunk_size=max(1, run["chunk_size"] // 2),
                                 vocab_chunk_size=max(1, run["vocab_chunk_size"] // 2))
    return fn


def _ours_cce(obj):
    if not fused_cce.available():
        raise ImportError("No module named 'cut_cross_entropy'")
    if obj.token_stats:
        raise NotImplementedError(f"{obj.spec} needs token statistics: impl='cce' falls back to ours")
    return _ours(obj, impl="cce")


def _cce(obj):
    from cut_cross_entropy import linear_cross_entropy

    impl = "cce" if torch.cuda.is_available() else "torch_compile"
    return lambda h, W, y: linear_cross_entropy(h, W, y, impl=impl)


def _liger(obj):
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    liger = LigerFusedLinearCrossEntropyLoss()
    return lambda h, W, y: liger(W, h, y)


def _trl(obj):
    from trl.kernels import ChunkedLogProbFunction

    outputs = ("log_sum_sq_probs",) if "sumsq" in obj.token_stats else ()
    if set(obj.token_stats) - {"sumsq"}:
        raise NotImplementedError(f"TRL's head gives no {obj.token_stats}")

    def fn(h, W, y):
        out = ChunkedLogProbFunction.apply(h, W, None, y.clamp(min=0), 1.0, TRL_CHUNK, None, 1.0,
                                           outputs)
        stats = {"sumsq": out[2].detach().float().exp()} if outputs else None
        return loss_from_logp(obj, out[0].float(), y != -100, stats)
    return fn


# the order they run in: the targets' baselines first, the optional compile variant (whose first
# call compiles for tens of seconds) last; past the section's budget only REQUIRED still run
METHODS = {"naive": _naive, "ours": _ours, "cce": _cce, "liger": _liger, "trl": _trl,
           "ours-token": lambda o: _ours(o, schedule="token"), "ours-half": _ours_half,
           "ours-cce": _ours_cce, "ours-compile": lambda o: _ours(o, impl="compile")}
REQUIRED = ("naive", "ours", "cce")


class Meter:
    """Peak memory beyond a base (MiB) and a wall clock that waits for the device's queue."""

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
    """(loss, peak MiB, median seconds, (grad h, grad W)) of forward + backward."""
    def step():
        h.grad = W.grad = None
        loss = fn(h, W, y)
        loss.backward()
        return loss

    step()                                                          # warm-up (compile, autotune)
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
    return float(loss.detach()), peak, statistics.median(times), grads


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def inputs(N, H, V, device, dtype, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    h = (torch.randn(N, H, generator=gen) * 0.5).to(device, dtype).requires_grad_()
    W = (torch.randn(V, H, generator=gen) * 0.02).to(device, dtype).requires_grad_()
    y = torch.randint(0, V, (N,), generator=gen).to(device)
    y[: N // 10] = -100                                             # a masked prompt
    return h, W, y


def run(shapes, specs, methods, device, dtype, reps, deadline, on_row):
    """Every (shape, spec, method); ``on_row(row)`` after each (the caller saves as it goes).
    Methods other than REQUIRED still to run after ``deadline`` (time.monotonic()) are recorded as
    skipped."""
    meter = Meter(device)
    for shape, (N, H, V) in shapes.items():
        try:
            h, W, y = inputs(N, H, V, device, dtype)
        except Exception as err:                                    # noqa: BLE001 - report, go on
            on_row({"shape": shape, "N": N, "H": H, "V": V, "error": f"inputs: {err}"})
            continue
        for spec in specs:
            obj = probsft.objective(spec)
            ref = None
            for method in methods:
                if method in NLL_ONLY and spec != "nll":
                    continue
                row = {"shape": shape, "N": N, "H": H, "V": V, "spec": spec, "method": method,
                       "dtype": str(dtype).removeprefix("torch.")}
                if time.monotonic() > deadline and method not in REQUIRED:
                    row["error"] = "skipped: section time budget spent"
                    on_row(row)
                    continue
                try:
                    fn = METHODS[method](obj)
                    loss, peak, sec, grads = bench(fn, h, W, y, meter, reps)
                    row.update(loss=loss, peak_mib=peak, seconds=sec)
                    if method == "naive":
                        ref = (loss, grads)
                    elif ref is not None:
                        row["loss_rel_err"] = abs(loss - ref[0]) / max(abs(ref[0]), 1e-30)
                        row["grad_rel_err"] = max(_rel(a, b) for a, b in zip(grads, ref[1]))
                except ImportError as err:
                    row["error"] = f"not installed: {err}"
                except NotImplementedError as err:                  # e.g. ours-cce for deft
                    row["error"] = f"n/a: {err}"
                except Exception as err:                            # noqa: BLE001 - report, go on
                    traceback.print_exc()
                    row["error"] = f"{type(err).__name__}: {err}"[:300]
                on_row(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        del h, W, y
