"""Paper Fig. 3: the logit-gradient weight W_f(p) (Lemma 3.1), drawn from saved CSVs only.

``draw(curves_csv, table_csv, out_stem, normalise=True)`` reads the W_f curves (probsft.theory.tables
.save_curves) and the derivation table (peaks), plots each curve (normalised to a maximum of 1 by
default), marks each peak with a dot and p = 1/2 with a dashed line, and writes out_stem.png/.svg.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from probsft.figures import save_figure


def _read_curves(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], np.array(rows[1:], dtype=float)      # [P, 1 + n_objectives]
    return data[:, 0], {name: data[:, i] for i, name in enumerate(header) if i > 0}


def _read_table(path):
    with open(path, newline="") as fh:
        return {r["spec"]: r for r in csv.DictReader(fh)}


def draw(curves_csv, table_csv, out_stem, normalise: bool = True) -> list[Path]:
    """Plot W_f(p) for every column of ``curves_csv``; returns [png, svg]."""
    p, curves = _read_curves(curves_csv)
    info = _read_table(table_csv)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (spec, w) in enumerate(curves.items()):
        w = np.where(np.isfinite(w), w, np.nan)
        scale = np.nanmax(w) if normalise and np.nanmax(w) > 0 else 1.0
        y = w / scale
        row = info.get(spec, {})
        label = row.get("label", spec)
        color = f"C{i % 10}"
        ax.plot(p, y, color=color, lw=1.8, label=label)
        if row.get("peak"):
            x_peak = float(np.clip(float(row["peak"]), p[0], p[-1]))
            ax.plot([x_peak], [np.interp(x_peak, p, np.nan_to_num(y))], "o", color=color, ms=6,
                    zorder=3)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.06 if normalise else None)
    ax.set_xlabel("p (probability of the target token)")
    ax.set_ylabel("normalised W_f(p)" if normalise else "W_f(p)")
    ax.set_title("Logit-gradient weight W_f(p) = s_f(p)(1 − p)  (Lemma 3.1, Fig. 3)", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return save_figure(fig, out_stem, dpi=150)
