"""Figure: the within-task dial. For each supervision kind and optimizer one panel: per task, the
paired held-out difference −p − NLL (exact-match points) at each of its positions along the base
model's probe p, with the 95% CI as error bars, the ±2-point equivalence band, the crossover
located within the task (marker on the 0 line, its 95% CI as a bar) and the paper's ≈ 0.5. A pure
function of the saved ``verdicts.json`` (probsft.continuum.dial.analyse).

    python -m probsft.figures.dial results/validate_dial/verdicts.json results/validate_dial/dial
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from probsft.figures import save_figure


def draw(verdicts_json, out_stem) -> list[Path]:
    """Draw ``<out_stem>.png`` and ``.svg`` from the dial's verdicts.json; the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probsft.continuum import predictions as pred
    from probsft.continuum.dial import task_of

    result = json.loads(Path(verdicts_json).read_text())
    cells = [c for c in result["cells"] if c["objective"] == "p"]
    panels = list(dict.fromkeys((c["supervision"], c["optimizer"]) for c in cells)) or [
        ("clean", "adamw")]
    sups = sorted({s for s, _ in panels}, key=lambda s: pred.SUPERVISION.index(s))
    opts = sorted({o for _, o in panels})
    tasks = sorted({task_of(c["position"]) for c in cells})
    colours = dict(zip(tasks, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    cross = {(x["task"], x["supervision"], x["optimizer"]): x for x in result["task_crossovers"]}
    fig, axes = plt.subplots(len(opts), len(sups), figsize=(4.8 * len(sups), 3.8 * len(opts)),
                             squeeze=False)
    margin = 100 * pred.TIE_MARGIN
    for i, opt in enumerate(opts):
        for j, sup in enumerate(sups):
            ax = axes[i][j]
            ax.axhspan(-margin, margin, color="0.9", lw=0)
            ax.axhline(0, color="0.4", lw=0.8)
            ax.axvline(pred.PAPER_CROSSOVER, color="0.5", ls="--", lw=0.8)
            for k, task in enumerate(tasks):
                cs = sorted((c for c in cells if task_of(c["position"]) == task
                             and (c["supervision"], c["optimizer"]) == (sup, opt)),
                            key=lambda c: c["probe_answer_p"])
                if not cs:
                    continue
                x = [c["probe_answer_p"] for c in cs]
                y = [c["delta"] for c in cs]
                err = [[c["delta"] - c["ci_low"] for c in cs], [c["ci_high"] - c["delta"] for c in cs]]
                ax.errorbar(x, y, yerr=err, marker="o", ms=4, lw=1.2, capsize=2,
                            color=colours[task], label=task)
                xc = cross.get((task, sup, opt))
                if xc and xc["p"] is not None:
                    lo, hi = xc["ci"] if xc["ci"] else (xc["p"], xc["p"])
                    yb = -1.5 * margin * (k + 1)
                    ax.plot([lo, hi], [yb, yb], color=colours[task], lw=3, alpha=0.5)
                    ax.plot([xc["p"]], [yb], marker="|", ms=10, color=colours[task])
            ax.set_xlim(0, 1)
            ax.set_title(f"{sup} / {opt}", fontsize=10)
            ax.set_xlabel("base model's probe answer p")
            if j == 0:
                ax.set_ylabel("Δ exact match, −p − NLL (points)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle("The within-task dial: −p against NLL along each task's positions "
                 "(bars below 0: each task's crossover with its 95% CI; dashed: the paper's 0.5)",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)


if __name__ == "__main__":
    print("\n".join(str(p) for p in draw(sys.argv[1], sys.argv[2])))
