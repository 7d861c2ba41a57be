"""Claim 2, the phase diagram: prior strength x noise rate -> winner of NLL vs −p, with E*.

    python -m probsft.figures.sim_phase results/sim/phase results/sim

Reads ``results.csv`` (theory-mode sweep of nll and p) and ``boundary.csv`` (E* of §2.4 per prior
strength). Colour: seed-mean final r^T q of −p minus that of NLL (red: −p wins, blue: NLL wins);
black line: the theory's first-order crossing rate E*; crosses: cells where the sign of the
first-order rate difference at t = 0 disagrees with the simulated winner. The title gives the
agreement rate over all (prior, noise, seed) cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from probsft.figures.sim_common import plt, save
from probsft.sim.analysis import pairwise_agreement, seed_mean
from probsft.sim.phase import read_boundary
from probsft.sim.sweep import read_rows


def draw(results_dir, out_dir, stem: str = "sim_phase") -> list[Path]:
    results_dir = Path(results_dir)
    rows = read_rows(results_dir / "results.csv")
    bnd = read_boundary(results_dir / "boundary.csv")
    means = seed_mean(rows, "eval/expected_acc")
    S = sorted({r["prior_strength"] for r in rows})
    E = sorted({r["noise_rate"] for r in rows})
    diff = np.array([[means[("p", s, e)][0] - means[("nll", s, e)][0] for s in S] for e in E])
    lim = np.nanmax(np.abs(diff)) or 1.0
    fig, ax = plt.subplots(figsize=(6.5, 4.8), constrained_layout=True)
    ds, de = (S[1] - S[0]) / 2 if len(S) > 1 else 0.5, (E[1] - E[0]) / 2 if len(E) > 1 else 0.5
    im = ax.imshow(diff, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   extent=(S[0] - ds, S[-1] + ds, E[0] - de, E[-1] + de))
    fig.colorbar(im, ax=ax, label="rᵀq(−p) − rᵀq(NLL) at the horizon")
    xs = [b["prior_strength"] for b in bnd]
    ax.plot(xs, np.clip([b["e_star"] for b in bnd], E[0] - de, E[-1] + de), "k-", lw=2,
            label="theory E* (first-order crossing)")
    agree, cells = pairwise_agreement(rows, "nll", "p")
    bad = [c for c in cells if c["sim_winner"] != c["pred_winner"]]
    if bad:
        ax.plot([c["prior_strength"] for c in bad], [c["noise_rate"] for c in bad], "kx", ms=5,
                label="first-order sign ≠ simulated winner")
    ax.set_xlim(S[0] - ds, S[-1] + ds)
    ax.set_ylim(E[0] - de, E[-1] + de)
    ax.set_xlabel("prior strength")
    ax.set_ylabel("label-noise rate E")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{results_dir.name}: winner NLL vs −p (theory mode); first-order agreement "
                 f"{100 * agree:.0f}%",
                 fontsize=10)
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
