"""Mixed-difficulty batches: held-out accuracy per group, batch of hard contexts only vs mixed.

    python -m probsft.figures.sim_mixed results/sim/mixed/adam-mixed results/sim

Reads ``results.csv`` of one variant of the ``mixed`` experiment (noisy labels, hard-group prior
strength 0). Bars: seed-mean held-out accuracy of each objective on the hard contexts, the easy
contexts (mixed batches only) and all contexts; the grey line is the base model on the same group.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from probsft.figures.sim_common import COLORS, plt, save, title
from probsft.sim.analysis import seed_mean
from probsft.sim.sweep import at_step, read_rows


def draw(results_dir, out_dir, stem: str = "sim_mixed") -> list[Path]:
    rows = at_step(read_rows(Path(results_dir) / "results.csv"))
    E = max(r["noise_rate"] for r in rows)
    rows = [r for r in rows if r["noise_rate"] == E]
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    groups = [g for g in ("_hard", "_easy", "") if rows[0][f"eval/acc{g}"] is not None]
    names = {"_hard": "hard contexts", "_easy": "easy contexts", "": "all contexts"}
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    width = 0.8 / len(objectives)
    for i, obj in enumerate(objectives):
        m = [seed_mean([r for r in rows if r["objective"] == obj], f"eval/acc{g}",
                       by=("objective",))[(obj,)][0] for g in groups]
        ax.bar(np.arange(len(groups)) + (i - (len(objectives) - 1) / 2) * width, m, width=width,
               color=COLORS.get(obj, f"C{i}"), label=labels[obj])
    if groups == [""]:
        base = [seed_mean(rows, "base/eval_acc", by=("noise_rate",))[(E,)][0]]
        ax.hlines(base, -0.45, 0.45, color="grey", ls=":", label="base model (before training)")
    ax.set_xticks(np.arange(len(groups)), [names[g] for g in groups])
    ax.set_ylabel(f"held-out accuracy (E={E:g})")
    ax.legend(fontsize=7, title="objective", title_fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title(results_dir), fontsize=9)
    return save(fig, out_dir, stem)


if __name__ == "__main__":
    print(draw(*sys.argv[1:4]))
