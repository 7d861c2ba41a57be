"""Where the time of one forward + backward of the fused loss goes on CPU: torch.profiler's self CPU
time per op, grouped into GEMMs (aten::mm/addmm/bmm/matmul), exp/log-sum-exp/softmax, copies and
casts, and the rest; ours (any impl/schedule/gemm) next to naive, on the same inputs.

    python benchmarks/profile_fused.py                        # issue 26's shape, float32, alpha(5)
    python benchmarks/profile_fused.py --dtype bfloat16 --methods ours,ours-eager-token-input
    python benchmarks/profile_fused.py --n 512 --h 896 --v 151936

Methods as in benchmarks/bench_fused.py (naive, ours, ours-IMPL-SCHEDULE-GEMM).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fused import _loss_fn  # noqa: E402

GROUPS = (("GEMM", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::addmm_")),
          ("exp / lse / softmax", ("exp", "logsumexp", "softmax", "log_softmax")),
          ("copy / cast / fill", ("copy_", "to", "_to_copy", "fill_", "zero_", "empty", "clone",
                                  "contiguous", "index", "cat")))


def group(name):
    for label, keys in GROUPS:
        if any(k == name or (not k.startswith("aten::") and k in name) for k in keys):
            return label
    return "other"


def profile(fn, h, W, y):
    from torch.profiler import ProfilerActivity, profile as prof

    h.grad = W.grad = None
    fn(h, W, y).backward()                                           # warm-up
    h.grad = W.grad = None
    with prof(activities=[ProfilerActivity.CPU]) as p:
        t0 = time.perf_counter()
        fn(h, W, y).backward()
        wall = time.perf_counter() - t0
    totals, ops = collections.Counter(), collections.Counter()
    for ev in p.key_averages():
        totals[group(ev.key)] += ev.self_cpu_time_total / 1e6
        ops[ev.key] += ev.self_cpu_time_total / 1e6
    return wall, totals, ops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1536)
    ap.add_argument("--h", type=int, default=1024)
    ap.add_argument("--v", type=int, default=65536)
    ap.add_argument("--objective", default="alpha(5)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--methods", default="naive,ours")
    ap.add_argument("--top", type=int, default=8, help="ops listed per method")
    args = ap.parse_args()
    import probsft

    obj = probsft.objective(args.objective)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    h = (torch.randn(args.n, args.h) * 0.5).to(dtype).requires_grad_()
    W = (torch.randn(args.v, args.h) * 0.02).to(dtype).requires_grad_()
    y = torch.randint(0, args.v, (args.n,))
    y[: args.n // 10] = -100                                         # a masked prompt
    print(f"N {args.n} H {args.h} V {args.v} {args.dtype} {obj.spec}, {torch.get_num_threads()} "
          f"threads; self CPU seconds of one forward + backward (profiler overhead included)")
    for method in args.methods.split(","):
        wall, totals, ops = profile(_loss_fn(method, obj, 8192), h, W, y)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in totals.most_common())
        print(f"{method}: wall {wall:.2f} s | {parts}")
        for name, sec in ops.most_common(args.top):
            print(f"    {name:40s} {sec:7.2f}")


if __name__ == "__main__":
    main()
