"""probsft.figures: pure functions from saved result files (CSV/JSON) to pictures (PNG + SVG)."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, out_stem, dpi: int = 130, tight: bool = True) -> list[Path]:
    """Write ``out_stem.png`` and ``out_stem.svg`` and close the figure.

    The SVG carries no date and fixed element ids, so redrawing unchanged results gives identical
    files (and no spurious diffs of committed figures).
    """
    import matplotlib
    import matplotlib.pyplot as plt

    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    extra = {"bbox_inches": "tight"} if tight else {}
    with matplotlib.rc_context({"svg.hashsalt": "probsft"}):
        fig.savefig(paths[0], dpi=dpi, metadata={"Software": None}, **extra)
        fig.savefig(paths[1], metadata={"Date": None}, **extra)
    plt.close(fig)
    return paths
