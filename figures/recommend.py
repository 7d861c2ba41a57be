"""`probsft recommend --plot`: where this data's probe p sits on the measured curve, from the saved
recommendation JSON only.

``draw(rec_json, out_stem)`` reads the JSON that `probsft recommend --json` wrote (its
``measured_curve``: each measured objective's smoothed Δ exact match vs NLL along the probe's p, for
the assumed noise kind and optimizer), draws the recommended objective and the top measured ones,
marks this data's p with a dashed line and Δ = 0 (NLL) with a grey one, and writes out_stem.png/.svg.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from probsft.errors import UserError
from probsft.figures import save_figure


def draw(rec_json, out_stem, top: int = 4) -> list[Path]:
    """Plot the measured curve of a saved recommendation; returns [png, svg]."""
    out = json.loads(Path(rec_json).read_text())
    samples = out.get("measured_curve")
    if not samples:
        raise UserError(f"{rec_json}: no measured curve to draw (a theory-only recommendation)")
    rec = out["recommendation"]["resolved"]
    ranked = [c["resolved"] for c in out["candidates"]
              if c["measured"] is not None and c["resolved"] != "nll"]   # nll: the 0 line
    specs = [s for s in dict.fromkeys([rec, *ranked[:top]]) if s in samples["delta"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.axhline(0.0, color="0.6", lw=1, label="nll (the reference)")
    for spec in specs:
        pts = [(p, d) for p, d in zip(samples["p"], samples["delta"][spec]) if d is not None]
        ax.plot(*zip(*pts), lw=2.2 if spec == rec else 1.2, marker="o", ms=3,
                label=spec + (" (recommended)" if spec == rec else ""))
    ax.axvline(samples["probe_p"], color="k", ls="--", lw=1,
               label=f"this data: p = {samples['probe_p']:.2f}")
    ax.set_xlabel("probe answer-token mean p (capability position)")
    ax.set_ylabel("Δ exact match vs NLL (points, smoothed)")
    ax.set_title(f"measured curve, {samples['supervision']}/{samples['optimizer']}")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out_stem)
