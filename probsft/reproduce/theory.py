"""Theory step of the main job: save the W_f curves and derivation table, then draw Fig. 3.

    probsft weights [SPEC ...] --out DIR       # render() for any specs
    probsft reproduce --only theory            # reproduce(): the paper's Fig. 3 set into results/theory
"""

from __future__ import annotations

from pathlib import Path

from probsft.figures.weights import draw
from probsft.theory.spec import parse, registered
from probsft.theory.symbolic import markdown_table, peak_text, table
from probsft.theory.tables import FIG3, save_curves, save_table


def render(specs, out_dir, normalise: bool = True, stem: str = "weights", tau: float = 0.5) -> list[Path]:
    """Save curves + table for ``specs``, then draw the plot from the saved files; returns paths."""
    specs = [parse(s).spec for s in specs]        # validates every spec before writing anything
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    derivations = table(specs, tau)
    curves = out_dir / f"{stem}_curves.csv"
    save_curves(specs, curves)
    save_table(derivations, out_dir / f"{stem}.csv", out_dir / f"{stem}.md")
    figs = draw(curves, out_dir / f"{stem}.csv", out_dir / stem, normalise=normalise)
    return [curves, out_dir / f"{stem}.csv", out_dir / f"{stem}.md", *figs]


def reproduce(out_dir: Path, full: bool) -> list[str]:
    """Theory step of `probsft reproduce`: the paper's Fig. 3 and the derivation table."""
    out_dir = Path(out_dir) / "theory"
    render(FIG3, out_dir)
    extra = [s for s in registered() if s not in FIG3]
    derivations = table(FIG3 + extra)
    peaks = ", ".join(f"{d.label}: {peak_text(d)}" for d in derivations[:len(FIG3)])
    return ["![normalised W_f(p), paper Fig. 3](theory/weights.png)", "",
            f"Peaks of W_f (Lemma 3.1, Prop. 3.2): {peaks}.", "",
            *markdown_table(derivations), "",
            ("Uniform prior over V tokens (paper notes §2.4): NLL reduces risk faster than any "
             "objective with s_f(1/V) < 1 iff the label-noise rate E < (V − 1)/V "
             "(`probsft.theory.risk.uniform_prior_threshold`).")]
