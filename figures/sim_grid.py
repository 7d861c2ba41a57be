"""The sensitivity grid, one figure per claim: where does it hold across V × contexts × steps ×
optimizer?

    python -m probsft.figures.sim_grid results/sim/grid results/sim

Reads ``winners.csv`` (probsft.sim.grid). One panel per optimizer; rows: (V, contexts), columns:
steps. Colour: the cell's outcome (green confirmed, red refuted, light grey inconclusive, dark grey
"prior does not matter here": clean NLL gains < 0.1 accuracy from the prior); text: the winner, the
paired difference and the prior's contribution.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap

from probsft.figures.sim_common import plt, save
from probsft.sim.grid import CLAIMS, read_winners

OUTCOME_COLOR = {"confirmed": "#7fc97f", "refuted": "#f0827d", "equivalent": "#bdd7e7",
                 "inconclusive": "#eeeeee", "prior does not matter here": "#999999"}


def draw(results_dir, out_dir, stem: str = "sim_grid") -> list[Path]:
    rows = read_winners(Path(results_dir) / "winners.csv")
    paths = []
    outcomes = list(OUTCOME_COLOR)
    cmap = ListedColormap([OUTCOME_COLOR[o] for o in outcomes])
    for claim, text in CLAIMS.items():
        sel = [r for r in rows if r["claim"] == claim]
        opts = list(dict.fromkeys(r["optimizer"] for r in sel))
        VC = sorted({(r["vocab_size"], r["contexts"]) for r in sel})
        steps = sorted({r["steps"] for r in sel})
        fig, axes = plt.subplots(1, len(opts), figsize=(3.2 * len(opts) + 1, 0.7 * len(VC) + 1.6),
                                 squeeze=False, constrained_layout=True)
        for ax, opt in zip(axes[0], opts):
            cell = {(r["vocab_size"], r["contexts"], r["steps"]): r for r in sel
                    if r["optimizer"] == opt}
            grid = np.array([[outcomes.index(cell[(V, C, t)]["outcome"]) for t in steps]
                             for V, C in VC])
            ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(outcomes) - 0.5, aspect="auto")
            for i, (V, C) in enumerate(VC):
                for j, t in enumerate(steps):
                    r = cell[(V, C, t)]
                    ax.text(j, i, f"{r['winner']}\n{r['estimate']:+.3f}\nprior {r['prior_contribution']:.3f}",
                            ha="center", va="center", fontsize=6)
            ax.set_xticks(range(len(steps)), [str(t) for t in steps])
            ax.set_yticks(range(len(VC)), [f"V={V}, C={C}" for V, C in VC])
            ax.set_xlabel("steps")
            ax.set_title(opt, fontsize=9)
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in OUTCOME_COLOR.values()]
        fig.legend(handles, outcomes, loc="outside lower center", ncol=3, fontsize=7)
        fig.suptitle(f"{text} (noisy labels; paired by seed)", fontsize=9)
        paths += save(fig, out_dir, f"{stem}_{claim}")
    return paths


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
