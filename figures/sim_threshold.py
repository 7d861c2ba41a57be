"""Claim 4, thresholding: NLL·1{p>=0.2}, top-10% and bottom-quantile training vs NLL and −p.

    python -m probsft.figures.sim_threshold results/sim/threshold results/sim

Reads ``results.csv`` (noisy labels); left: held-out accuracy vs prior strength per objective;
right: gain over full-token NLL at each prior strength (grouped bars, one colour per objective as in
the legend), the paper's Fig. 5 in miniature.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from probsft.figures.sim_common import COLORS, add_base_p_ticks, plt, save, title
from probsft.sim.analysis import curve
from probsft.sim.sweep import read_rows


def draw(results_dir, out_dir, stem: str = "sim_threshold") -> list[Path]:
    rows = read_rows(Path(results_dir) / "results.csv")
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    E = max(r["noise_rate"] for r in rows)
    rows = [r for r in rows if r["noise_rate"] == E]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    xs, nll, _ = curve(rows, "nll", "eval/acc")
    others = [o for o in objectives if o != "nll"]
    slot = np.arange(len(xs))                       # one group of bars per prior strength
    width = 0.8 / max(len(others), 1)
    for i, obj in enumerate(objectives):
        xs, m, sd = curve(rows, obj, "eval/acc")
        color = COLORS.get(obj, f"C{i}")
        axes[0].errorbar(xs, m, yerr=sd, marker="o", ms=3, capsize=2, color=color,
                         label=labels[obj])
        if obj != "nll":
            j = others.index(obj)
            axes[1].bar(slot + (j - (len(others) - 1) / 2) * width, m - nll, width=width,
                        color=color, label=labels[obj])
    axes[0].set_ylabel(f"held-out accuracy (E={E:g})")
    axes[0].set_xlabel("prior strength")
    add_base_p_ticks(axes[0], rows)
    axes[1].set_xticks(slot, [f"s={x:g}" for x in xs])        # ticks at the centre of each group
    axes[1].set_ylabel("held-out accuracy minus full-token NLL")
    axes[1].set_xlabel("prior strength")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].legend(fontsize=7, title="objective", title_fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title(results_dir)}: thresholded objectives (Q = base-model quantile)")
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
