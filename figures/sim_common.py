"""Shared plumbing of the simulator figures (figures/sim_*.py): style, the x axis, saving PNG + SVG.

Every sim figure is a pure function ``draw(results_dir, out_dir) -> list[Path]`` of saved CSVs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from probsft.figures import save_figure  # noqa: E402
from probsft.sim.analysis import seed_mean  # noqa: E402

COLORS = {"nll": "C0", "p": "C3", "alpha(0.1)": "C9", "alpha(0.5)": "C2", "alpha(10)": "C1",
          "nll@p>=0.2": "C4", "nll@p>=Q90": "C5", "nll@p<=Q10": "C7", "nll@p<=Q50": "C8"}


def base_p_axis(rows):
    """{prior_strength: seed-mean base-model target p (Eq. 5)} for labelling the continuum axis."""
    return {k[0]: v[0] for k, v in seed_mean(rows, "base/mean_p", by=("prior_strength",)).items()}


def add_base_p_ticks(ax, rows):
    """A top axis that labels prior-strength ticks with the mean base p of the targets (Eq. 5)."""
    axis = base_p_axis(rows)
    top = ax.secondary_xaxis("top")
    ticks = [s for i, s in enumerate(sorted(axis)) if i % max(1, len(axis) // 5) == 0]
    top.set_xticks(ticks)
    top.set_xticklabels([f"{axis[s]:.2f}" for s in ticks], fontsize=7)
    top.set_xlabel("mean base p of training targets (Eq. 5)", fontsize=8)


def save(fig, out_dir, stem: str) -> list[Path]:
    return save_figure(fig, Path(out_dir) / stem)


def title(results_dir) -> str:
    """``experiment/variant — V, contexts, steps, optimizer`` from the saved config.json."""
    import json

    results_dir = Path(results_dir)
    cfg = json.loads((results_dir / "config.json").read_text())
    name = (f"{results_dir.parent.name}/{results_dir.name}"
            if results_dir.name in ("sgd", "adam") or "-" in results_dir.name and
            results_dir.name.split("-")[0] in ("sgd", "adam") else results_dir.name)
    if "vocab_size" not in cfg or "mode" not in cfg:
        return name
    opt = f", {cfg['optimizer']} lr {cfg['lr']:g}" if cfg["mode"] == "learning" else ""
    return f"{name} (V={cfg['vocab_size']}, {cfg['contexts']} contexts, {cfg['steps']} steps{opt})"
