"""Figure: the capability continuum as a dose–response curve. For each supervision kind and optimizer
one panel: the paired held-out difference −p − NLL (exact-match points, mean over seeds and items)
against the base model's probe p (answer tokens), its 95% CI band (seeds ∪ item bootstrap), the ±2
point equivalence band, the theory's predicted sign per region (shaded: green where −p should win,
red where NLL should, grey where a tie is predicted; borders from probsft.continuum.predictions) and
the located crossover with its CI. A pure function of the saved ``verdicts.json``.

    python -m probsft.figures.continuum results/validate/verdicts.json results/validate/continuum
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from probsft.figures import save_figure


def draw(verdicts_json, out_stem) -> list[Path]:
    """Draw ``<out_stem>.png`` and ``.svg`` from verdicts.json; returns the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probsft.continuum import predictions as pred

    result = json.loads(Path(verdicts_json).read_text())
    cells = [c for c in result["cells"] if c["objective"] == "p"]
    kinds = pred.by_kind(cells)
    panels = list(kinds) or [("clean", "adamw")]
    sups = list(dict.fromkeys(s for s, _ in panels))
    opts = list(dict.fromkeys(o for _, o in panels))
    fig, axes = plt.subplots(len(opts), len(sups), figsize=(5.4 * len(sups), 4.2 * len(opts)),
                             sharey=False, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for sup, opt in panels:
        ax = axes[opts.index(opt)][sups.index(sup)]
        ax.set_visible(True)
        cs = sorted(kinds.get((sup, opt), []), key=lambda c: c["probe_answer_p"])
        x = np.array([c["probe_answer_p"] for c in cs])
        y = np.array([c["delta"] for c in cs])
        lo, hi = np.array([c["ci_low"] for c in cs]), np.array([c["ci_high"] for c in cs])
        top = max([3.0, *np.abs(lo), *np.abs(hi)]) * 1.1 if len(cs) else 10.0
        for region in pred.REGIONS:                      # the theory's predicted sign, shaded
            sign = pred.SIGN[pred.predict(region.name, sup)]
            x0, x1 = region.lo, min(region.hi, 1.0)
            if sign != round(sign) or sign == 0:         # a tie is (also) predicted: the ±margin band
                ax.fill_between([x0, x1], -100 * pred.TIE_MARGIN, 100 * pred.TIE_MARGIN,
                                color="0.6", alpha=0.3, lw=0)
            if sign != 0:                                # a winner: shade its side of 0
                ax.fill_between([x0, x1], 0, top if sign > 0 else -top, alpha=0.08, lw=0,
                                color="tab:green" if sign > 0 else "tab:red")
            ax.text((x0 + x1) / 2, 0.93 * top, f"predicted: {pred.predict(region.name, sup)}",
                    ha="center", fontsize=7, color="0.3")
        for b in pred.BORDERS:
            ax.axvline(b, color="0.75", ls="--", lw=0.8)
        ax.axhline(0, color="0.4", lw=0.8)
        for m in (-100 * pred.TIE_MARGIN, 100 * pred.TIE_MARGIN):
            ax.axhline(m, color="0.6", ls=":", lw=0.8)
        if len(cs):
            ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.3, lw=0, label="95% CI")
            ax.plot(x, y, "o-", color="tab:blue", ms=4, label="−p − NLL (mean)")
        cr = result["crossover"].get(f"{sup}/{opt}")
        if cr and cr["p"] is not None:
            ax.axvline(cr["p"], color="tab:purple", lw=1.2, label=f"crossover {cr['p']:.2f}")
            if cr["ci"]:
                ax.axvspan(*cr["ci"], color="tab:purple", alpha=0.1, lw=0)
        ax.axvline(pred.PAPER_CROSSOVER, color="k", ls="-.", lw=0.8, label="paper ≈ 0.5")
        ax.set_xlim(0, 1)
        ax.set_ylim(-top, top)
        ax.set_xlabel("base-model mean p of the answer tokens (probe)")
        ax.set_title(f"{sup} supervision, {opt}\nmetric: held-out exact match", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    for row in axes:
        row[0].set_ylabel("exact match −p minus NLL (points, paired)")
    fig.tight_layout()
    paths = save_figure(fig, out_stem, tight=False)
    if result.get("alpha"):
        paths += draw_alpha(result, Path(str(out_stem) + "_alpha"))
    return paths


def draw_alpha(result: dict, out_stem) -> list[Path]:
    """``<out_stem>.png``/``.svg``: the best α of the (1 − p^α)/α family (NLL α → 0, −p α = 1) against
    probe p, one line per supervision/optimizer; hollow markers where several α share the best
    score (left out of the trend); the legend gives Spearman's ρ and its one-sided p-value."""
    import matplotlib.pyplot as plt

    from probsft.continuum import predictions as pred

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    alphas = sorted({a["best_alpha"] for a in result["alpha"]} | {0.0, 1.0})
    level = {a: i for i, a in enumerate(alphas)}         # α on an ordinal axis (0 … 10)
    groups = pred.by_kind(result["alpha"])
    for k, ((sup, opt), rows) in enumerate(groups.items()):
        x = np.array([a["probe_answer_p"] for a in rows])
        y = np.array([level[a["best_alpha"]] for a in rows]) + 0.06 * (k - len(groups) / 2)
        tied = np.array([a["tied"] for a in rows])
        tr = result["alpha_trend"][f"{sup}/{opt}"]
        label = f"{sup}/{opt}" + ("" if tr["rho"] is None else
                                  f" (ρ {tr['rho']:+.2f}, p {tr['p_value']:.2f})")
        line, = ax.plot(x[~tied], y[~tied], "o-", ms=5, lw=1, label=label)
        ax.plot(x[tied], y[tied], "o", ms=5, mfc="none", color=line.get_color())
    ax.set_yticks(range(len(alphas)), [f"{a:g}" + (" (nll)" if a == 0 else " (−p)" if a == 1
                                                   else "") for a in alphas])
    ax.set_xlim(0, 1)
    ax.set_xlabel("base-model mean p of the answer tokens (probe)")
    ax.set_ylabel("best α (held-out exact match)")
    ax.set_title("Best α against prior strength (prediction: rises with p)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, out_stem, tight=False)


if __name__ == "__main__":
    print(draw(sys.argv[1], sys.argv[2]))
