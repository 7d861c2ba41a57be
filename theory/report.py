"""The theory report: W_f curves and the derivation table saved to CSV/markdown, then the Fig. 3 plot.

Paper Fig. 3: the logit-gradient weight W_f(p) = s_f(p)(1 - p) (Lemma 3.1) of -log p, alpha = 0.5,
0.8, -p, alpha = 5, 10 and log(1 - p), each normalised to a maximum of 1, with its peak marked and
a dashed line at p = 1/2. ``render(specs, out_dir)`` first saves

    weights_curves.csv   p and one W_f column per objective (raw, not normalised)
    weights.csv / .md    spec, label, f, s_f, W_f, peak, peak kind, convexity, class, tau, mass

(atomically), then draws weights.png / weights.svg from those files (probsft.figures.weights).
``reproduce(out_dir, full)`` is the theory step of ``probsft reproduce``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from probsft.theory.spec import parse
from probsft.theory.symbolic import Derivation, markdown_table, peak_text, table

FIG3 = ["nll", "alpha(0.5)", "alpha(0.8)", "p", "alpha(5)", "alpha(10)", "log(1-p)"]
"""The paper's Fig. 3 objectives, in its order."""

TABLE_COLUMNS = ["spec", "label", "f", "s_f", "W_f", "peak", "peak_exact", "peak_kind", "convexity",
                 "class", "tau", "mass_above_tau"]
GRID = np.linspace(0.0, 1.0, 1001)[1:-1]   # p in (0, 1), [999]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def render(specs, out_dir, normalise: bool = True, stem: str = "weights", tau: float = 0.5) -> list[Path]:
    """Save curves + table for ``specs``, then draw the plot from the saved files; returns paths."""
    from probsft.figures.weights import draw

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [parse(s).spec for s in specs]        # validates every spec before writing anything
    derivations = table(specs, tau)
    curves = out_dir / f"{stem}_curves.csv"
    save_curves(specs, curves)
    save_table(derivations, out_dir / f"{stem}.csv", out_dir / f"{stem}.md")
    figs = draw(curves, out_dir / f"{stem}.csv", out_dir / stem, normalise=normalise)
    return [curves, out_dir / f"{stem}.csv", out_dir / f"{stem}.md", *figs]


def reproduce(out_dir: Path, full: bool) -> list[str]:
    """Theory step of `probsft reproduce`: the paper's Fig. 3 and the derivation table."""
    from probsft.theory.spec import registered

    render(FIG3, out_dir)
    extra = [s for s in registered() if s not in FIG3]
    derivations = table(FIG3 + extra)
    peaks = ", ".join(f"{d.label}: {peak_text(d)}" for d in derivations[:len(FIG3)])
    return ["![normalised W_f(p), paper Fig. 3](weights.png)", "",
            f"Peaks of W_f (Lemma 3.1, Prop. 3.2): {peaks}.", "",
            *markdown_table(derivations), "",
            ("Uniform prior over V tokens (paper notes §2.4): NLL reduces risk faster than any "
             "objective with s_f(1/V) < 1 iff the label-noise rate E < (V − 1)/V "
             "(`probsft.theory.risk.uniform_prior_threshold`).")]
