"""Figure: the −p/NLL crossover at two model sizes. One panel per (task, supervision) row of the
size comparison: Δ exact match −p − NLL (points; 95% CI bars, clipped to the means' range) along
the base model's probe p for the tiny (0.83M) and the medium (8.9M) backbone; under the 0 line
each size's crossover (an open triangle when censored at the probed range) with its 95% CI as a
bar (bootstrap over seeds, each replicate's crossing censored alike); the ±2-point equivalence band
and the paper's ≈ 0.5 (dashed). The title carries the shift and the registered verdict. A pure
function of the saved ``sizes.json`` (probsft.continuum.sizes.write).

    python -m probsft.figures.sizes results/dial_sizes/sizes.json results/dial_sizes/sizes
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from probsft.figures import save_figure

SIZE_LABEL = {"small": "tiny 0.83M", "large": "medium 8.9M"}


def draw(sizes_json, out_stem) -> list[Path]:
    """Draw ``<out_stem>.png`` and ``.svg`` from sizes.json; the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probsft.continuum import predictions as pred

    data = json.loads(Path(sizes_json).read_text())
    rows = data["rows"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    sups = list(dict.fromkeys(r["supervision"] for r in rows))
    fig, axes = plt.subplots(len(sups), len(tasks), figsize=(4.8 * len(tasks), 3.6 * len(sups)),
                             squeeze=False)
    colours = dict(zip(SIZE_LABEL, ("tab:blue", "tab:red")))
    margin = 100 * pred.TIE_MARGIN
    for r in rows:
        ax = axes[sups.index(r["supervision"])][tasks.index(r["task"])]
        ax.axhspan(-margin, margin, color="0.9", lw=0)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.axvline(data["paper_crossover"], color="0.5", ls="--", lw=0.8)
        for k, (side, root, cens, ci) in enumerate((("small", r["a"], r["censored_a"], r["ci_a"]),
                                                    ("large", r["b"], r["censored_b"], r["ci_b"]))):
            c = r[side]
            err = [[d - lo for d, (lo, _) in zip(c["delta"], c["ci"])],
                   [hi - d for d, (_, hi) in zip(c["delta"], c["ci"])]]
            ax.errorbar(c["p"], c["delta"], yerr=err, marker="o", ms=4, lw=1.2, capsize=2,
                        color=colours[side], label=SIZE_LABEL[side])
            yb = -1.5 * margin * (k + 1)
            ax.plot(ci, [yb, yb], color=colours[side], lw=3, alpha=0.5)
            ax.plot([root], [yb], marker="|" if cens is None else ">" if cens == "above" else "<",
                    ms=10, color=colours[side], mfc="none" if cens else colours[side])
        ax.set_xlim(0, 1)
        ds = r["small"]["delta"] + r["large"]["delta"]      # the means set the scale
        ax.set_ylim(min(min(ds), -3 * margin) - 12, max(max(ds), margin) + 12)
        ax.set_title(f"{r['task']}, {r['supervision']} labels: shift {r['shift']:+.2f} "
                     f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}], {r['verdict']}", fontsize=9)
        ax.set_xlabel("base model's probe answer p")
        ax.set_ylabel("Δ exact match, −p − NLL (points)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle("The crossover at two sizes (AdamW): markers under 0 are each size's crossover "
                 "(open: censored at the probed range); dashed: the paper's 0.5", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)


if __name__ == "__main__":
    print("\n".join(str(p) for p in draw(sys.argv[1], sys.argv[2])))
