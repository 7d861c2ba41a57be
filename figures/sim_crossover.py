"""Claim 1, the crossover: final accuracy vs prior strength for each objective.

    python -m probsft.figures.sim_crossover results/sim/crossover results/sim

Reads ``results.csv`` of a sweep (``probsft simulate --preset crossover`` or ``crossover-theory``);
one row per noise rate; left panel argmax accuracy against the true token, right panel expected
accuracy r^T q (= minus the population risk), both seed means with ±1 std bands, vs the
prior-strength dial (top axis: the paper's capability statistic, mean base-model target p, Eq. 5).
"""

from __future__ import annotations

import sys
from pathlib import Path

from probsft.figures.sim_common import COLORS, add_base_p_ticks, plt, save
from probsft.sim.analysis import curve
from probsft.sim.sweep import read_rows


def draw(results_dir, out_dir, stem: str = "sim_crossover") -> list[Path]:
    rows = read_rows(Path(results_dir) / "results.csv")
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    noise = sorted({r["noise_rate"] for r in rows})
    fig, axes = plt.subplots(len(noise), 2, figsize=(10, 3.6 * len(noise)), squeeze=False,
                             constrained_layout=True)
    for row, E in zip(axes, noise):
        for ax, metric, name in zip(row, ("eval/acc", "eval/expected_acc"),
                                    ("accuracy (argmax = true token)", "expected accuracy rᵀq")):
            xs, base, _ = curve(rows, objectives[0], "base/expected_acc", noise_rate=E)
            ax.plot(xs, base, color="grey", ls=":", label="base model rᵀq₀")
            for i, obj in enumerate(objectives):
                xs, m, sd = curve(rows, obj, metric, noise_rate=E)
                color = COLORS.get(obj, f"C{i}")
                ax.plot(xs, m, marker="o", ms=3, color=color, label=labels[obj])
                ax.fill_between(xs, m - sd, m + sd, color=color, alpha=0.15)
            ax.set_xlabel("prior strength (0 = uniform base, 1 = confident on true token)")
            ax.set_ylabel(f"{name}\nnoise E={E:g}")
            add_base_p_ticks(ax, [r for r in rows if r["noise_rate"] == E])
            ax.grid(alpha=0.3)
    axes[0, 1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{Path(results_dir).name}: final accuracy across the continuum")
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
