"""Benchmark: seconds per simulator step against V and contexts, and the step's distance from the
floor of its two matmuls.

    python benchmarks/bench_sim.py                     # V = 32 ... 32768, contexts 256 and 1024
    python benchmarks/bench_sim.py --vocab 32 1024 --contexts 256 --steps 5

One learning-mode configuration (d = 32, float32, one thread, as the sweep runs): a step is the
logits z = X W^T [C, V], the objective's logit gradient (Lemma 3.1) and the weight gradient
g_z^T X [V, d], then the optimizer update (``probsft.sim.dynamics.learn``). The floor is the two
matmuls alone on the same shapes; the script prints the ratio step / matmuls (target <= 2) for
every size, and the theory-mode step (Euler step on [C, V] logits) for comparison.
Times are the best of ``--repeats`` (the machine is shared).
"""

from __future__ import annotations

import argparse
import time

import torch

import probsft
from probsft.sim import dynamics
from probsft.sim.config import SimConfig
from probsft.sim.continuum import build


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.no_grad()
def measure(V: int, C: int, steps: int, repeats: int, optimizer: str = "sgd") -> dict:
    cfg = SimConfig(mode="learning", vocab_size=V, contexts=C, eval_contexts=8, feature_dim=32,
                    dtype="float32", steps=steps, optimizer=optimizer)
    batch = build(cfg, [(0.5, 0.2, 0)])
    obj = probsft.objective("p")
    learn = best_of(lambda: dynamics.learn(obj, batch, 0.5, steps, optimizer, None), repeats)
    W, X = batch.W0.clone(), batch.X

    def matmuls():
        for _ in range(steps):
            z = torch.einsum("bcd,bvd->bcv", X, W)
            torch.einsum("bcv,bcd->bvd", z, X)

    floor = best_of(matmuls, repeats)
    theory = build(cfg.replace(mode="theory"), [(0.5, 0.2, 0)])
    flow = best_of(lambda: dynamics.theory_flow(obj, theory, 0.1, steps, None), repeats)
    return {"V": V, "C": C, "learn": learn / steps, "matmuls": floor / steps,
            "theory": flow / steps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[32, 128, 512, 2048, 8192, 32768])
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, d = 32, float32, {args.optimizer}, "
          f"best of {args.repeats} x {args.steps} steps")
    print(f"| V | contexts | learning step (ms) | two matmuls (ms) | step / matmuls | "
          f"theory step (ms) |")
    print("|---|---|---|---|---|---|")
    for C in args.contexts:
        for V in args.vocab:
            r = measure(V, C, args.steps, args.repeats, args.optimizer)
            print(f"| {V} | {C} | {1e3 * r['learn']:.3f} | {1e3 * r['matmuls']:.3f} | "
                  f"{r['learn'] / r['matmuls']:.2f}x | {1e3 * r['theory']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
