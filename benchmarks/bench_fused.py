"""CPU benchmark: peak memory and time of forward+backward for "linear + loss" implementations.

Methods (each case in a fresh subprocess):
  naive    the authors' path: full logits h @ W.T, float32 log_softmax, gather, f(p), masked mean
           (an adaptive f, deft/eaft: Objective.loss on the full logits, statistics included)
  chunked  torchtune-style chunked CE: chunk the hidden states, upcast each logits chunk (autograd)
  cce      Apple cut-cross-entropy, impl="torch_compile" (its Triton kernel needs CUDA); NLL only
  trl      TRL's fused LM head (trl.kernels.chunked_logprob) -> per-token log p, then f(log p)
  ours     probsft.fused_linear_loss with its defaults (impl/schedule/gemm/layout "auto": the rule
           and the per-machine calibration of theory/fused_auto.py for this CPU and dtype)
  ours-IMPL-SCHEDULE-GEMM[-LAYOUT][@C]  an explicit choice, e.g. ours-eager-vocab-input (bf16
           GEMMs), ours-compile-token-float32 (torch.compile, one pass, float32 GEMMs),
           ours-eager-token-auto-row (logits chunks row-major, not calibrated); @C: chunk_size C
           tokens (default: min(2^26 / V for float32, 2^25 / V for bf16, max(128, N / 6)) in
           multiples of 64); each part may be "auto" (LAYOUT defaults to "auto")
  ours-token, ours-compile  older names of ours-auto-token-auto and ours-compile-auto-auto
Memory: peak RSS beyond the inputs and weights ("peak"), and the same less the weight gradient every
method must return in the weight's dtype ("work" = the loss's working memory). The child resets
the kernel's high-water mark (echo 5 > /proc/self/clear_refs) after a small warm-up run (which
triggers torch.compile), records VmRSS, runs --repeats full forwards+backwards, and reads VmHWM; MALLOC_MMAP_THRESHOLD_=1MiB makes glibc
return freed buffers to the OS so the base is not inflated by cached memory. The weight gradient
produced by every method is included in "peak". Time: the best of --repeats forward+backward runs
(wall clock); ratios are to "naive" of the same shape and objective, measured in the same run.

The run first prints the CPU features probsft saw (theory/fused_auto.py: AVX2, AVX512, AVX512-BF16,
AMX): bf16 GEMMs are fast only with AVX512-BF16/AMX, which decides the "auto" rule; then what "ours"
runs at each size (schedule, GEMM dtype, layout, chunk) and this machine's calibrations behind it
(the cached ones, or measured now).

Run:  python benchmarks/bench_fused.py            (Qwen2.5-0.5B head at N=4096, Llama-3.2-1B head at
                                                   N=8192; ~35 min on 2 cores, peak ~13 GB)
      python benchmarks/bench_fused.py --sizes llama-3.2-1b=1024 --objectives nll
      python benchmarks/bench_fused.py --quick    (N=512 / 256, a minute or two)
Results: printed table + JSON in --out (default bench_out/fused).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {"qwen2.5-0.5b": (896, 151_936), "llama-3.2-1b": (2048, 128_256),
          "h1024-v65536": (1024, 65_536)}           # issue 26's shape (with N 1536, -p^5)
METHODS = ("naive", "chunked", "cce", "trl", "ours", "ours-token", "ours-compile")
PRESETS = {   # one command per question: --preset NAME sets sizes, objectives, dtypes and methods
    # issue 26's ratio table: ours vs naive, CCE, Liger, TRL at 3 shapes in bf16 and float32, plus
    # the candidate schedules and GEMM dtypes the "auto" rule chooses among (to re-pick it per CPU)
    "issue26": dict(sizes="qwen2.5-0.5b=4096,llama-3.2-1b=4096,h1024-v65536=1536",
                    objectives="alpha(5)", dtype="bfloat16,float32",
                    methods="naive,cce,liger,trl,ours,ours-eager-token-auto,ours-eager-vocab-auto,"
                            "ours-eager-auto-input,ours-eager-auto-float32,ours-eager-auto-auto-row,"
                            "ours-eager-auto-auto-col"),
    # the shape only (what the shared 2-core AVX2 machine can afford)
    "issue26-shape": dict(sizes="h1024-v65536=1536", objectives="alpha(5)", dtype="float32,bfloat16",
                          methods="naive,cce,liger,trl,ours,ours-eager-auto-auto-row"),
}
ALIASES = {"ours-token": "ours-auto-token-auto", "ours-compile": "ours-compile-auto-auto"}


def _status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # MiB
    raise RuntimeError(key)


def _loss_fn(method, obj, chunk):
    import torch
    import torch.nn.functional as F

    def masked_mean(logp, y):
        valid = y != -100
        counted = valid if obj.interval is None else valid & obj.interval.indicator(logp.exp().detach())
        vals = torch.where(counted, obj.f_of_logp(logp), torch.zeros_like(logp))
        return vals.sum() / counted.sum().clamp(min=1)

    if method == "naive" and obj.token_stats:   # adaptive f: the statistics (DEFT's sum q^2,
        def fn(h, W, y):                       # EAFT's top-K entropy) from the same full logits
            return obj.loss((h @ W.T).float(), y)
    elif method == "naive":
        def fn(h, W, y):
            logp = torch.log_softmax((h @ W.T).float(), -1)                 # [N, V] float32
            return masked_mean(logp.gather(-1, y.clamp(min=0)[:, None]).squeeze(-1), y)
    elif method == "chunked":   # torchtune CEWithChunkedOutputLoss, generalised to f(p)
        def fn(h, W, y, n_chunks=8):
            parts = [torch.log_softmax((hc @ W.T).float(), -1).gather(-1, yc.clamp(min=0)[:, None])
                     for hc, yc in zip(h.chunk(n_chunks), y.chunk(n_chunks))]
            return masked_mean(torch.cat(parts).squeeze(-1), y)
        if obj.spec == "nll":
            def fn(h, W, y, n_chunks=8):
                total = sum(F.cross_entropy((hc @ W.T).float(), yc, reduction="sum")
                            for hc, yc in zip(h.chunk(n_chunks), y.chunk(n_chunks)))
                return total / (y != -100).sum().clamp(min=1)
    elif method == "cce":       # its torch_compile path (the Triton kernel needs CUDA); any f from
        from cut_cross_entropy import linear_cross_entropy     # its per-token loss -log p

        def fn(h, W, y):
            if obj.spec == "nll":
                return linear_cross_entropy(h, W, y, impl="torch_compile")
            return masked_mean(-linear_cross_entropy(h, W, y, impl="torch_compile",
                                                     reduction="none").float(), y)
    elif method == "liger":     # Liger-Kernel's fused linear CE (Triton); any f via reduction="none"
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger_mean, liger_none = (LigerFusedLinearCrossEntropyLoss(reduction=r) for r in ("mean", "none"))

        def fn(h, W, y):
            if obj.spec == "nll":
                return liger_mean(W, h, y)
            return masked_mean(-liger_none(W, h, y).float(), y)
    elif method == "trl":
        from trl.kernels.chunked_logprob import ChunkedLogProbFunction

        def fn(h, W, y):
            logp = ChunkedLogProbFunction.apply(h, W, None, y.clamp(min=0), 1.0, chunk, None, 1.0, ())[0]
            return masked_mean(logp, y)
    else:
        from probsft.theory.fused import fused_linear_loss

        name, _, chunk_size = ALIASES.get(method, method).partition("@")
        parts = name.split("-")[1:] or ["auto"] * 3
        if len(parts) not in (3, 4):
            raise SystemExit(f"method {method!r}: ours or ours-IMPL-SCHEDULE-GEMM[-LAYOUT][@C]")
        impl, schedule, gemm, layout = parts if len(parts) == 4 else (*parts, "auto")
        chunk_size = int(chunk_size) if chunk_size else None

        def fn(h, W, y):
            return fused_linear_loss(h, W, y, obj, schedule=schedule, impl=impl, gemm=gemm,
                                     chunk_size=chunk_size, layout=layout)
    return fn


def child(args):
    """One case: prints a JSON line with peak extra MiB and seconds."""
    import torch

    import probsft

    torch.manual_seed(0)
    obj = probsft.objective(args.objective)
    H, V = SHAPES[args.shape]
    dtype = getattr(torch, args.dtype)
    fn = _loss_fn(args.method, obj, args.trl_chunk)

    def make(n):
        h = (torch.randn(n, H) * 0.5).to(dtype).requires_grad_()
        y = torch.randint(0, V, (n,))
        y[: n // 10] = -100                                                  # a masked prompt
        return h, y

    W = (torch.randn(V, H) * 0.02).to(dtype).requires_grad_()
    hw, yw = make(64)
    print(json.dumps({"stage": "warm-up", "at": time.time()}), flush=True)  # for a timeout's bound
    fn(hw, W, yw).backward()                                                 # warm-up / compile
    del hw, yw
    W.grad = None
    h, y = make(args.n)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS")
    seconds = []
    for _ in range(args.repeats):
        print(json.dumps({"stage": "timed", "at": time.time()}), flush=True)
        h.grad, W.grad = None, None
        t0 = time.perf_counter()
        loss = fn(h, W, y)
        loss.backward()
        seconds.append(time.perf_counter() - t0)
        value = float(loss)
        del loss
    seconds, loss = min(seconds), value
    peak = _status("VmHWM") - base
    print(json.dumps({"loss": loss, "seconds": seconds, "peak_extra_mib": peak,
                      "grad_w_mib": W.grad.numel() * W.grad.element_size() / 2**20}))


def run_case(method, shape, n, objective, dtype, trl_chunk, timeout, repeats):
    """The child's result; on a timeout {"error": ..., "more_than_s": a lower bound on one full
    forward+backward: the time from the start of the stage it was in (the 64-token warm-up, which
    does less work than the full run, or the timed run) to the kill}."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, __file__, "--child", "--method", method, "--shape", shape, "--n", str(n),
           "--objective", objective, "--dtype", dtype, "--trl-chunk", str(trl_chunk),
           "--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stages = [json.loads(ln) for ln in out.splitlines() if ln.startswith('{"stage"')]
        r = {"error": f"timeout {timeout}s" + (f" in the {stages[-1]['stage']} run" if stages else "")}
        if stages:
            r["more_than_s"] = time.time() - stages[-1]["at"]
        return r
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{") and '"stage"' not in ln]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:160]}
    return json.loads(lines[-1])


def _fmt(r):
    head = f"{r['dtype']:8s} {r['shape']:14s} {r['n']:5d} {r['objective']:10s} {r['method']:24s}"
    if "error" in r:
        return f"{head} FAILED: {r['error']}"
    return (f"{head} {r['peak_extra_mib']:9.0f} {r.get('mem_ratio', float('nan')):9.3f}"
            f" {r['work_mib']:9.0f} {r.get('work_ratio', float('nan')):10.3f} {r['seconds']:7.2f}"
            f" {r.get('time_ratio', float('nan')):10.2f}  {r['loss']:.5f}")


def _time_ratio(ours, base):
    """"0.62", "< 0.31" (the baseline timed out: a lower bound on its time) or "–"."""
    if "error" in ours or base is None:
        return "–"
    if "error" not in base:
        return f"{ours['seconds'] / base['seconds']:.2f}"
    return f"< {ours['seconds'] / base['more_than_s']:.2f}" if "more_than_s" in base else "–"


def ratio_table(rows):
    """Markdown: per dtype, shape and objective, ours (auto) vs each baseline, time and memory;
    every ratio from one run of this script (one process per case, the same inputs)."""
    lines = ["| dtype | shape | N | f | ours s | ours / naive time | ours / naive mem | "
             "ours / CCE time | ours / Liger time | ours / TRL time |", "|---|---|---|---|---|---|---|---|---|---|"]
    find = {(r["dtype"], r["shape"], r["objective"], r["method"]): r for r in rows}
    for (dtype, shape, obj, method), ours in find.items():
        if method != "ours":
            continue
        base = {m: find.get((dtype, shape, obj, m)) for m in ("naive", "cce", "liger", "trl")}
        mem = ours.get("mem_ratio")
        lines.append(f"| {dtype} | {shape} | {ours['n']} | {obj} | "
                     f"{'–' if 'error' in ours else format(ours['seconds'], '.2f')} | "
                     + " | ".join([_time_ratio(ours, base["naive"]),
                                   "–" if mem is None else f"{mem:.3f}"]
                                  + [_time_ratio(ours, base[m]) for m in ("cce", "liger", "trl")])
                     + " |")
    lines += ["", "Baselines that did not run (a timeout gives a lower bound on their time, hence "
              "'<'):", ""]
    lines += [f"- {r['dtype']} {r['shape']} {r['objective']} {r['method']}: {r['error']}"
              + (f" (one run > {r['more_than_s']:.0f} s)" if "more_than_s" in r else "")
              for r in rows if "error" in r]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=list(PRESETS), help="sizes/objectives/dtypes/methods of a "
                    "named question (flags given explicitly take precedence)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench_out/fused")
    ap.add_argument("--dtype", default="bfloat16", help="bfloat16, float32 or both, comma-separated")
    ap.add_argument("--objectives", default="nll,alpha(10)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--trl-chunk", type=int, default=8192, help="TRL vocabulary chunk width")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per case")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per case (best is kept)")
    ap.add_argument("--rounds", type=int, default=1, help="run the method list this many times, "
                    "interleaved, keeping each method's best round: load drift on a shared "
                    "machine then biases no method")
    ap.add_argument("--sizes", default="qwen2.5-0.5b=4096,llama-3.2-1b=8192",
                    help="SHAPE=N pairs; shapes: " + ", ".join(SHAPES))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method"), ap.add_argument("--shape"), ap.add_argument("--n", type=int)
    ap.add_argument("--objective")
    preset = ap.parse_known_args()[0].preset
    if preset:
        ap.set_defaults(**PRESETS[preset])
    args = ap.parse_args()
    if args.child:
        return child(args)
    dtypes = args.dtype.split(",")
    if not set(dtypes) <= {"bfloat16", "float32"}:
        ap.error("--dtype: bfloat16, float32 or both, comma-separated")
    try:
        sizes = {k: int(v) for k, v in (kv.split("=") for kv in args.sizes.split(","))}
        assert all(k in SHAPES and v >= 1 for k, v in sizes.items())
    except (ValueError, AssertionError):
        ap.error(f"--sizes: SHAPE=N pairs with SHAPE in {list(SHAPES)} and N >= 1")
    if args.quick:
        sizes = {"qwen2.5-0.5b": 512, "llama-3.2-1b": 256}
    import torch
    from machine import cpu_line as machine_line

    cpu_line = machine_line() + " at start"
    print(cpu_line, flush=True)
    calibration = what_ours_runs(dtypes, sizes, torch)
    print(calibration, flush=True)
    cpu_line += "\n\n" + calibration
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"peak = RSS high-water beyond inputs+weights (MiB), fwd+bwd; work = peak less the "
          f"weight gradient; time = best of {args.repeats}")
    print(f"{'dtype':8s} {'shape':14s} {'N':>5s} {'objective':10s} {'method':24s} {'peak MiB':>9s}"
          f" {'mem/naive':>9s} {'work MiB':>9s} {'work/naive':>10s} {'sec':>7s} {'time/naive':>10s}  loss")
    for dtype in dtypes:
        for shape, n in sizes.items():
            for objective in args.objectives.split(","):
                kept = {}
                for rnd, method in ((i, m) for i in range(args.rounds)
                                    for m in args.methods.split(",")):
                    old = kept.get(method)
                    if old is not None and "error" in old:
                        continue                        # a timeout or failure is not retried
                    r = run_case(method, shape, n, objective, dtype, args.trl_chunk, args.timeout,
                                 args.repeats)
                    r["round"] = rnd
                    if old is not None and ("error" in r or r["seconds"] >= old["seconds"]):
                        old.setdefault("other_rounds_s", []).append(r.get("seconds"))
                        print(f"{'':8s} round {rnd} {method}: {r.get('seconds', r.get('error'))}")
                        continue
                    if old is not None:
                        r["other_rounds_s"] = old.get("other_rounds_s", []) + [old["seconds"]]
                        rows.remove(old)
                    kept[method] = r
                    if "error" not in r:
                        r["work_mib"] = r["peak_extra_mib"] - r["grad_w_mib"]
                    r.update(shape=shape, n=n, objective=objective, method=method, dtype=dtype)
                    rows.append(r)
                    _ratios(kept)
                    print(_fmt(r), flush=True)
                    _save(out, rows, args, cpu_line, torch)
    print("\n" + ratio_table(rows))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def what_ours_runs(dtypes, sizes, torch):
    """One line per weight dtype and size: what "ours" runs there (schedule, GEMM dtype, layout,
    chunk: probsft.theory.fused.plan, which calibrates now if nothing is cached), and per dtype the
    cached calibrations behind it (probsft.theory.fused_auto)."""
    from probsft.theory import fused_auto
    from probsft.theory.fused import plan

    lines = []
    for name in dtypes:
        dtype = getattr(torch, name)
        for shape, n in sizes.items():
            H, V = SHAPES[shape]
            run = plan(torch.zeros((), dtype=dtype).expand(V, H), n)
            lines.append(f"ours for {name} at {shape} N {n}: {run['schedule']} schedule, "
                         f"{str(run['gemm']).replace('torch.', '')} GEMMs, {run['layout']} layout, "
                         f"chunks of {run['chunk_size']} tokens")
        prefix, _, suffix = fused_auto.machine_key(dtype, ("*",)).partition("*")
        timed = [e for k, e in fused_auto.read_calibration().items()     # this format's only
                 if k.startswith(prefix) and k.endswith(suffix)
                 and all(c.count("/") == 2 for c in e.get("seconds", {}))]
        lines += [f"  {name} calibration {e.get('measured', '?')}: " + ", ".join(
            f"{k} {v:.3f} s" for k, v in e.get("seconds", {}).items()) for e in timed] or \
            [f"  {name}: by rule, not timed"]
    lines.append(f"  (calibration cache: {fused_auto.cache_path()})")
    return "\n".join(lines)


def _ratios(kept):
    """Ratios to naive of the same shape, objective and dtype, for the rows kept so far."""
    base = kept.get("naive")
    if base is None or "error" in base:
        return
    for r in kept.values():
        if "error" not in r:
            r["mem_ratio"] = r["peak_extra_mib"] / base["peak_extra_mib"]
            r["work_ratio"] = r["work_mib"] / base["work_mib"]
            r["time_ratio"] = r["seconds"] / base["seconds"]


def _save(out, rows, args, cpu_line, torch):
    from probsft.theory.fused_auto import cpu_features

    meta = {"quick": args.quick, "preset": args.preset, "repeats": args.repeats,
            "timeout": args.timeout, "cpu": cpu_features(), "torch": torch.__version__,
            "loadavg_now": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for name, text in (("results.json", json.dumps({"rows": rows, **meta}, indent=1)),
                       ("results.md", f"{cpu_line}\n\n`{' '.join(sys.argv)}`, {meta['date']}\n\n"
                                      + ratio_table(rows))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)


if __name__ == "__main__":
    main()
