"""Claim 4, thresholding: NLL·1{p>=0.2}, top-10% and bottom-quantile training vs NLL and −p.

    python -m probsft.figures.sim_threshold results/sim/threshold results/sim

Reads ``results.csv``; left: held-out accuracy vs prior strength per objective; right: gain over
full-token NLL at each prior strength (bars), the paper's Fig. 5 in miniature.
"""

from __future__ import annotations

import sys
from pathlib import Path

from probsft.figures.sim_common import COLORS, add_base_p_ticks, plt, save
from probsft.sim.analysis import curve
from probsft.sim.sweep import read_rows


def draw(results_dir, out_dir, stem: str = "sim_threshold") -> list[Path]:
    rows = read_rows(Path(results_dir) / "results.csv")
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    xs, nll, _ = curve(rows, "nll", "eval/acc")
    others = [o for o in objectives if o != "nll"]
    width = 0.8 / max(len(others), 1) * (xs[1] - xs[0] if len(xs) > 1 else 1)
    for i, obj in enumerate(objectives):
        xs, m, sd = curve(rows, obj, "eval/acc")
        color = COLORS.get(obj, f"C{i}")
        axes[0].errorbar(xs, m, yerr=sd, marker="o", ms=3, capsize=2, color=color,
                         label=labels[obj])
        if obj != "nll":
            j = others.index(obj)
            axes[1].bar(xs + (j - (len(others) - 1) / 2) * width, m - nll, width=width, color=color,
                        label=labels[obj])
    axes[0].set_ylabel("held-out accuracy")
    axes[1].set_ylabel("accuracy minus full-token NLL")
    axes[1].axhline(0, color="k", lw=0.8)
    for ax in axes:
        ax.set_xlabel("prior strength")
        add_base_p_ticks(ax, rows)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Thresholded objectives (thresholds on current p; Q = base-model quantile)")
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
