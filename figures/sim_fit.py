"""Claim 5, training fit follows the winner (paper Fig. 6 right): mean training-target p after SFT.

    python -m probsft.figures.sim_fit results/sim/fit results/sim

Reads ``results.csv``; plots ``train/mean_p`` (Eq. 5 after training) for each objective and the base
model's value, against the prior-strength dial, next to the held-out accuracy of the same runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from probsft.figures.sim_common import COLORS, add_base_p_ticks, plt, save, title
from probsft.sim.analysis import curve
from probsft.sim.sweep import at_step, read_rows


def draw(results_dir, out_dir, stem: str = "sim_fit") -> list[Path]:
    rows = at_step(read_rows(Path(results_dir) / "results.csv"))
    E = max(r["noise_rate"] for r in rows)                  # the noisy-label runs
    rows = [r for r in rows if r["noise_rate"] == E]
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    xs, base, _ = curve(rows, objectives[0], "base/mean_p")
    axes[0].plot(xs, base, color="grey", ls=":", marker="s", ms=3, label="base (original)")
    for i, obj in enumerate(objectives):
        for ax, metric in zip(axes, ("train/mean_p", "eval/acc")):
            xs, m, sd = curve(rows, obj, metric)
            ax.errorbar(xs, m, yerr=sd, marker="o", ms=3, capsize=2, color=COLORS.get(obj, f"C{i}"),
                        label=labels[obj])
    axes[0].set_ylabel("mean p of training targets after training (Eq. 5)")
    axes[1].set_ylabel("held-out accuracy")
    for ax in axes:
        ax.set_xlabel("prior strength")
        add_base_p_ticks(ax, rows)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title(results_dir)}: training fit vs held-out accuracy (E={E:g})")
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
