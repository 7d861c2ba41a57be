"""Figure: each task placed on the capability continuum (base-model probe mean p on x) with each
objective's held-out gain over NLL (y; exact match, Jaro–Winkler for figlet), one panel per
supervision-noise rate. A pure function of the saved ``results.csv`` of probsft.validate.experiment.

    python -m probsft.figures.continuum results/validate/results.csv results/validate/continuum
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from probsft.figures import save_figure


def draw(csv_path, out_stem) -> list[Path]:
    """Draw ``<out_stem>.png`` and ``.svg`` from the results CSV; returns the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probsft.validate.experiment import metric_of

    with open(csv_path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["objective"] != "base"]
    noises = sorted({float(r["noise"]) for r in rows})
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    fig, axes = plt.subplots(1, len(noises), figsize=(5.2 * len(noises), 4), sharey=True,
                             squeeze=False)
    for ax, noise in zip(axes[0], noises):
        sub = [r for r in rows if float(r["noise"]) == noise]
        tasks = list(dict.fromkeys(r["task"] for r in sub))
        for k, obj in enumerate(objectives):
            xs, ys, es = [], [], []
            for t in tasks:
                key = metric_of(t)
                vals = lambda o: np.array([float(r[key]) for r in sub if r["task"] == t
                                           and r["objective"] == o])
                v, ref = vals(obj), vals("nll")
                if len(v) == 0 or len(ref) == 0:
                    continue
                xs.append(float(next(r["probe_mean_p"] for r in sub if r["task"] == t)))
                ys.append(100 * (v.mean() - ref.mean()))
                es.append(100 * v.std())
            offset = (k - (len(objectives) - 1) / 2) * 0.012   # spread the markers of one task
            ax.errorbar(np.array(xs) + offset, ys, yerr=es, marker="o", ls="none", capsize=2,
                        label=labels[obj])
        for t in tasks:
            x = float(next(r["probe_mean_p"] for r in sub if r["task"] == t))
            ax.annotate(t, (x, 0), textcoords="offset points", xytext=(0, -14), ha="center",
                        fontsize=8, color="0.3")
        ax.axhline(0, color="0.5", lw=0.8)
        for x0 in (0.25, 0.65):        # region borders of probsft.validate.probe
            ax.axvline(x0, color="0.8", ls="--", lw=0.8)
        ax.set_xlim(-0.05, 1.05)      # room for the spread markers of a task at p ≈ 0 or ≈ 1
        ax.set_xlabel("base-model mean p of the answer tokens (probe)")
        ax.set_title(f"token noise {noise:g}")
    axes[0][0].set_ylabel("held-out gain over NLL (points)")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, out_stem, tight=False)


if __name__ == "__main__":
    print(draw(sys.argv[1], sys.argv[2]))
