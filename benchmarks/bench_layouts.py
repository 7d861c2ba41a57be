"""The three GEMMs of one fused-loss chunk in each logits layout (probsft.theory.fused_auto): "row"
(z = h W^T as [C, V]) and "col" (z^T = W h^T as [V, C]), with dhidden = G W and dW += G^T h in the
matching layouts; float32 (or --dtype), one process, interleaved, best of --rounds. This is what
the per-machine calibration decides between, at the shapes of issue 26.

    python benchmarks/bench_layouts.py                      # 3 heads x chunk sizes, ~2 min on 2 cores
    python benchmarks/bench_layouts.py --shapes h1024-v65536 --chunks 256 512

Prints GFLOP/s per layout and col / row time (< 1: the vocab-major layout is faster here), after a
reference: one square --square^3 GEMM in the same dtype, the BLAS's own rate on this CPU (a chunk
near it has no layout left to gain).
"""

from __future__ import annotations

import argparse
import time

import torch

from bench_fused import SHAPES
from machine import cpu_line


def products(h, W, G, GT, gh, gW):
    """{layout: the chunk's three products} on the same operands."""
    return {"row": lambda: (h @ W.t(), torch.mm(G, W, out=gh), gW.addmm_(G.t(), h)),
            "col": lambda: (W @ h.t(), torch.mm(GT.t(), W, out=gh), gW.addmm_(GT, h))}


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--chunks", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--square", type=int, default=4096, help="side of the reference GEMM (0: none)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    print(cpu_line(), flush=True)
    if args.square:
        a, b = (torch.randn(args.square, args.square).to(dtype) for _ in range(2))
        best = min(_timed(lambda: a @ b) for _ in range(args.rounds + 1))
        print(f"reference: {args.square}^3 {args.dtype} GEMM {2 * args.square ** 3 / best / 1e9:.1f} "
              f"GFLOP/s", flush=True)
        del a, b
    print(f"{'shape':14s} {'C':>5s} {'row GF/s':>9s} {'col GF/s':>9s} {'col/row time':>12s}")
    for name in args.shapes:
        H, V = SHAPES[name]
        gen = torch.Generator().manual_seed(0)
        W = (torch.randn(V, H, generator=gen) * 0.02).to(dtype)
        gW = torch.zeros(V, H, dtype=dtype)
        for C in args.chunks:
            h = torch.randn(C, H, generator=gen).to(dtype)
            G = (torch.randn(C, V, generator=gen) * 1e-3).to(dtype)
            GT, gh = G.t().contiguous(), torch.empty(C, H, dtype=dtype)
            best = {}
            for round_ in range(args.rounds + 1):                   # round 0: warm-up
                for layout, fn in products(h, W, G, GT, gh, gW).items():
                    seconds = _timed(fn)
                    if round_:
                        best[layout] = min(best.get(layout, float("inf")), seconds)
            flops = 3 * 2 * C * H * V / 1e9
            print(f"{name:14s} {C:5d} {flops / best['row']:9.1f} {flops / best['col']:9.1f} "
                  f"{best['col'] / best['row']:12.3f}", flush=True)
            del G, GT


if __name__ == "__main__":
    main()
