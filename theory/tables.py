"""The theory tables: W_f curves and the derivation table saved to CSV/markdown (results only).

Paper Fig. 3: the logit-gradient weight W_f(p) = s_f(p)(1 - p) (Lemma 3.1) of -log p, alpha = 0.5,
0.8, -p, alpha = 5, 10 and log(1 - p), each normalised to a maximum of 1, with its peak marked and
a dashed line at p = 1/2. ``render(specs, out_dir)`` first saves

    weights_curves.csv   p and one W_f column per objective (raw, not normalised)
    weights.csv / .md    spec, label, f, s_f, W_f, peak, peak kind, convexity, class, class vs NLL, tau, mass

(atomically; floats to probsft.files.SIGNIFICANT digits, so that they are the same bytes on every
CPU). probsft.figures.weights draws Fig. 3 from those files; probsft.reproduce.theory joins the two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from probsft.files import atomic_write as write_atomic, atomic_write_csv
from probsft.theory.spec import parse
from probsft.theory.symbolic import Derivation, markdown_table

FIG3 = ["nll", "alpha(0.5)", "alpha(0.8)", "p", "alpha(5)", "alpha(10)", "log(1-p)"]
"""The paper's Fig. 3 objectives, in its order."""

TABLE_COLUMNS = ["spec", "label", "f", "s_f", "W_f", "peak", "peak_exact", "peak_kind", "convexity",
                 "class", "class_vs_nll", "w_mean_p", "class_tau", "tau", "mass_above_tau"]
GRID = np.linspace(0.0, 1.0, 1001)[1:-1]   # p in (0, 1), [999]


def save_curves(specs, path: Path) -> None:
    """p and W_f(p) (threshold applied; quantile thresholds drawn unresolved) per spec -> CSV."""
    cols = {"p_grid": GRID}            # not "p": that is also the spec of 1 - p
    for spec in specs:
        obj = parse(spec)
        if obj.interval is not None and obj.interval.has_quantile:
            obj = obj.base
        with np.errstate(all="ignore"):
            cols[parse(spec).spec] = obj.W(GRID)
    atomic_write_csv(path, (dict(zip(cols, row)) for row in zip(*cols.values())), cols)


def save_table(derivations: list[Derivation], csv_path: Path, md_path: Path) -> None:
    rows = ({k: row[k] for k in TABLE_COLUMNS} for row in (d.to_dict() for d in derivations))
    atomic_write_csv(csv_path, rows, TABLE_COLUMNS)
    write_atomic(md_path, "\n".join(markdown_table(derivations)) + "\n")
