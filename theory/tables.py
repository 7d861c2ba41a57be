"""The theory tables: W_f curves and the derivation table saved to CSV/markdown (results only).

Paper Fig. 3: the logit-gradient weight W_f(p) = s_f(p)(1 - p) (Lemma 3.1) of -log p, alpha = 0.5,
0.8, -p, alpha = 5, 10 and log(1 - p), each normalised to a maximum of 1, with its peak marked and
a dashed line at p = 1/2. ``render(specs, out_dir)`` first saves

    weights_curves.csv   p and one W_f column per objective (raw, not normalised)
    weights.csv / .md    spec, label, f, s_f, W_f, peak, peak kind, convexity, class, class vs NLL, tau, mass

(atomically). probsft.figures.weights draws Fig. 3 from those files; probsft.reproduce.theory
joins the two.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from probsft.files import atomic_write as write_atomic
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
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(cols))
    for row in zip(*cols.values()):
        writer.writerow([repr(float(v)) for v in row])
    write_atomic(path, buf.getvalue())


def save_table(derivations: list[Derivation], csv_path: Path, md_path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for d in derivations:
        row = d.to_dict()
        writer.writerow({k: row[k] for k in TABLE_COLUMNS})
    write_atomic(csv_path, buf.getvalue())
    write_atomic(md_path, "\n".join(markdown_table(derivations)) + "\n")
