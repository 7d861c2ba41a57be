"""Claim 6, escape from a near-uniform prior: time to reach p = 1/2 vs the initial target p0.

    python -m probsft.figures.sim_escape results/sim/escape results/sim

Reads ``escape.csv``. Left: log-log, with the fitted slope d log t / d log(1/p0) per objective
(−p: 1/p0 scaling means slope 1). Right: t vs log(1/p0), with the fitted linear slope (NLL:
log(1/p0) scaling means a straight line of slope ≈ 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from probsft.figures.sim_common import COLORS, plt, save
from probsft.sim.escape import fit_slopes, read_escape


def draw(results_dir, out_dir, stem: str = "sim_escape") -> list[Path]:
    rows = read_escape(Path(results_dir) / "escape.csv")
    slopes = fit_slopes(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for i, spec in enumerate(slopes):
        sel = [r for r in rows if r["objective"] == spec and r["reached"]]
        x = np.array([1 / r["p0"] for r in sel])
        t = np.array([r["escape_time"] for r in sel])
        color = COLORS.get(spec, f"C{i}")
        label = sel[0]["label"] if sel else spec
        axes[0].loglog(x, t, marker="o", color=color,
                       label=f"{label}: slope {slopes[spec]['loglog']:.2f}")
        axes[1].plot(np.log(x), t, marker="o", color=color,
                     label=f"{label}: dt/dlog(1/p0) {slopes[spec]['linlog']:.3g}")
    axes[0].set_xlabel("1/p0")
    axes[0].set_ylabel("escape time (q_y reaches 0.5)")
    axes[1].set_xlabel("log(1/p0)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("escape time")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Escape from a near-uniform prior (gradient flow on the logits, clean label)")
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
