"""Claim 2, the phase diagram: prior strength x noise rate -> winner of NLL vs −p, with E*.

    python -m probsft.figures.sim_phase results/sim/phase results/sim

Reads ``results.csv`` (theory-mode sweep of nll and p, recorded at several horizons T) and
``boundary.csv`` (E* of §2.4 per prior strength). Left and middle: the shortest and the longest
horizon; colour: seed-mean r^T q of −p minus that of NLL (red: −p wins, blue: NLL wins); black line:
the theory's first-order crossing rate E*; crosses: cells where the sign of the first-order rate
difference at t = 0 disagrees with the simulated winner. Right: the agreement rate over all (prior,
noise, seed) cells against the horizon T (the theorem speaks of t → 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from probsft.figures.sim_common import plt, save, title
from probsft.sim.analysis import agreement_by_horizon, pairwise_agreement, seed_mean
from probsft.sim.phase import read_boundary
from probsft.sim.sweep import at_step, read_rows


def _panel(ax, rows, bnd, T):
    means = seed_mean(rows, "eval/expected_acc")
    S = sorted({r["prior_strength"] for r in rows})
    E = sorted({r["noise_rate"] for r in rows})
    diff = np.array([[means[("p", s, e)][0] - means[("nll", s, e)][0] for s in S] for e in E])
    lim = np.nanmax(np.abs(diff)) or 1.0
    ds, de = (S[1] - S[0]) / 2 if len(S) > 1 else 0.5, (E[1] - E[0]) / 2 if len(E) > 1 else 0.5
    im = ax.imshow(diff, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   extent=(S[0] - ds, S[-1] + ds, E[0] - de, E[-1] + de))
    ax.plot([b["prior_strength"] for b in bnd],
            np.clip([b["e_star"] for b in bnd], E[0] - de, E[-1] + de), "k-", lw=2,
            label="theory E* (first-order crossing)")
    agree, cells = pairwise_agreement(rows, "nll", "p")
    bad = [c for c in cells if c["sim_winner"] != c["pred_winner"]]
    ax.plot([c["prior_strength"] for c in bad], [c["noise_rate"] for c in bad], "kx", ms=5,
            label="first-order sign ≠ simulated winner")
    ax.set_xlim(S[0] - ds, S[-1] + ds)
    ax.set_ylim(E[0] - de, E[-1] + de)
    ax.set_xlabel("prior strength")
    ax.set_ylabel("label-noise rate E")
    ax.set_title(f"T = {T:g}: agreement {100 * agree:.0f}%", fontsize=9)
    return im


def draw(results_dir, out_dir, stem: str = "sim_phase") -> list[Path]:
    results_dir = Path(results_dir)
    rows = read_rows(results_dir / "results.csv")
    bnd = read_boundary(results_dir / "boundary.csv")
    lr = json.loads((results_dir / "config.json").read_text())["lr"]
    steps = sorted({r["steps"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    for ax, t in zip(axes[:2], (steps[0], steps[-1])):
        im = _panel(ax, at_step(rows, t), bnd, lr * t)
        fig.colorbar(im, ax=ax, label="rᵀq(−p) − rᵀq(NLL)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8)   # off the cells
    curve = agreement_by_horizon(rows, lr)
    axes[2].semilogx([c[0] for c in curve], [100 * c[1] for c in curve], "o-k")
    axes[2].axhline(50, color="grey", ls=":", lw=0.8)
    axes[2].set_xlabel("horizon T (gradient-flow time)")
    axes[2].set_ylabel("first-order sign agrees with simulated winner (% of cells)")
    axes[2].set_ylim(0, 100)
    axes[2].grid(alpha=0.3, which="both")
    fig.suptitle(f"{title(results_dir)}: winner NLL vs −p (theory mode)", fontsize=10)
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
