"""Claim 3, the α sweep: accuracy of (1-p^α)/α vs α at each prior strength, and the best α.

    python -m probsft.figures.sim_alpha results/sim/alpha results/sim

Reads ``results.csv``; metric: held-out accuracy in learning mode, r^T q in theory mode; NLL is
plotted at α = 0.05 on the log axis, as the α -> 0 limit. Left: the metric vs α, one line per prior
strength (paper Fig. 6 left, both ends in one panel); right: the best α vs the mean base-model
target p (Eq. 5).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from probsft.figures.sim_common import plt, save, title
from probsft.sim.analysis import alpha_of, best_alpha, primary_metric, seed_mean
from probsft.sim.sweep import at_step, read_rows

NLL_X = 0.05


def draw(results_dir, out_dir, stem: str = "sim_alpha") -> list[Path]:
    rows = at_step(read_rows(Path(results_dir) / "results.csv"))
    E = max(r["noise_rate"] for r in rows)                  # the noisy-label runs
    rows = [r for r in rows if r["noise_rate"] == E]
    metric = primary_metric(rows)
    means = seed_mean(rows, metric)
    priors = sorted({r["prior_strength"] for r in rows})
    base = {k[0]: v[0] for k, v in seed_mean(rows, "base/mean_p", by=("prior_strength",)).items()}
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for i, s in enumerate(priors):
        pts = sorted((alpha_of(o), m) for (o, ss, _), (m, _, _) in means.items() if ss == s)
        a = np.array([x if x > 0 else NLL_X for x, _ in pts])
        axes[0].plot(a, [m for _, m in pts], marker="o", ms=3,
                     color=cmap(i / max(len(priors) - 1, 1)),
                     label=f"s={s:g} (base p {base[s]:.2f})")
    axes[0].set_xscale("log")
    axes[0].axvline(1.0, color="k", ls="--", lw=0.8)
    axes[0].set_xlabel("α  (NLL drawn at α=0.05; dashed: α=1, the convexity boundary)")
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=7)
    best = best_alpha(rows, metric)
    axes[1].plot([b[1] for b in best], [max(b[2], NLL_X) for b in best], marker="o")
    axes[1].set_yscale("log")
    ticks = [NLL_X, 0.1, 0.3, 1, 3, 10]
    axes[1].set_yticks(ticks, ["NLL", "0.1", "0.3", "1", "3", "10"])
    axes[1].set_ylim(0.04, 12)
    axes[1].set_xlabel("mean base p of training targets (Eq. 5)")
    axes[1].set_ylabel("best α")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title(results_dir)}: α sweep of (1 − p^α)/α (E={E:g})")
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
