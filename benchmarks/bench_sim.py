"""Benchmark: the vectorised simulator sweep vs the same configurations run one at a time.

    python benchmarks/bench_sim.py                         # crossover (learning) + phase (theory)
    python benchmarks/bench_sim.py --presets crossover --steps 100

Both paths run the identical code (probsft.sim.sweep.run_objective) on identical configurations; the
vectorised path batches configurations as the sweep does (chunks of ~2^18 logits), the baseline
calls it with a batch of one configuration per (prior, noise, seed) cell, as a Python loop per run
would. Prints wall times, the speed-up ratio, and checks that the results agree.
The ratio depends on the size of one run: the presets' runs (1024 contexts x V=32 in learning mode)
are already tensor programs big enough to be compute-bound on 2 cores, so batching them gains
little; many small runs (``small``) are overhead-bound, where batching gains most.
"""

from __future__ import annotations

import argparse
import time

import torch

from probsft.sim.config import SimConfig
from probsft.sim.continuum import build
from probsft.sim.presets import preset
from probsft.sim.sweep import chunk_size, grid, run_objective


# Many small runs (16 contexts, V=16), where a Python loop per run is dominated by per-op overhead.
SMALL = SimConfig(mode="theory", objectives=("nll", "p"), vocab_size=16, contexts=16, lr=0.1,
                  prior_strengths=tuple(k / 10 for k in range(11)),
                  noise_rates=tuple(k / 20 for k in range(11)), seeds=(0, 1, 2, 3, 4))


@torch.no_grad()
def vectorised(cfg):
    cells, n = grid(cfg), chunk_size(cfg)
    batches = [build(cfg, cells[i:i + n]) for i in range(0, len(cells), n)]
    return {spec: torch.cat([run_objective(cfg, spec, b)["eval/expected_acc"] for b in batches])
            for spec in cfg.objectives}


@torch.no_grad()
def one_at_a_time(cfg):
    out = {}
    for spec in cfg.objectives:
        out[spec] = torch.cat([run_objective(cfg, spec, build(cfg, [cell]))["eval/expected_acc"]
                               for cell in grid(cfg)])
    return out


def best_of(fn, cfg, repeats):
    """(minimum wall time over ``repeats`` calls, last result): the machine is shared and noisy."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(cfg)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["crossover", "phase", "small"],
                    help="preset names; 'small' = a theory-mode sweep of many small runs")
    ap.add_argument("--steps", type=int, default=100, help="steps per run (same for both paths)")
    ap.add_argument("--repeats", type=int, default=3, help="best-of-N wall time for each path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)        # as the sweep runs (probsft.sim.sweep.single_thread)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread (both paths)")
    print(f"{'preset':<12} {'runs':>6} {'vectorised s':>13} {'one-at-a-time s':>16} {'speed-up':>9}"
          f" {'max |diff|':>11}")
    for name in args.presets:
        cfg = (SMALL if name == "small" else preset(name)).replace(steps=args.steps)
        runs = len(grid(cfg)) * len(cfg.objectives)
        t_fast, fast = best_of(vectorised, cfg, args.repeats)
        t_slow, slow = best_of(one_at_a_time, cfg, args.repeats)
        diff = max(float((fast[k] - slow[k]).abs().max()) for k in fast)
        print(f"{name:<12} {runs:>6} {t_fast:>13.2f} {t_slow:>16.2f} "
              f"{t_slow / t_fast:>8.1f}x {diff:>11.2e}")


if __name__ == "__main__":
    main()
