"""probsft.figures: pure functions from saved result files (CSV/JSON) to pictures (PNG + SVG)."""

from __future__ import annotations

import io
from pathlib import Path

from probsft.files import atomic_write


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
    pictures = (io.BytesIO(), io.BytesIO())
    with matplotlib.rc_context({"svg.hashsalt": "probsft"}):
        fig.savefig(pictures[0], format="png", dpi=dpi, metadata={"Software": None}, **extra)
        fig.savefig(pictures[1], format="svg", metadata={"Date": None}, **extra)
    plt.close(fig)
    for path, picture in zip(paths, pictures):
        atomic_write(path, picture.getvalue())          # never half a picture on a full disk
    return paths
