"""The theory's crossing noise rate E* across the continuum (paper §2.4, §6 prediction 4).

For the base model of each prior strength (seed ``cfg.seeds[0]``, noise-free labels, evaluated
contexts only) the expected first-order rates of two objectives are linear in the noise rate E,

    E_x[Ṙ_f] = (1 - E) E_x[Ṙ_f | ỹ = y*] + E E_x[Ṙ_f | ỹ != y*],

so they cross at one E* = |A| / (|A| + B) (paper's notation); above E* the prior-leaning objective
reduces population risk faster. ``probsft.theory.risk.noise_threshold`` computes it; this module
only feeds it the simulator's base models and saves ``boundary.csv`` for the phase figure.

    rows = save_boundary(cfg, out_dir)    # [{prior_strength, base/mean_p_true, e_star}]
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

import probsft
from probsft.files import atomic_write_csv, rounded
from probsft.sim.config import SimConfig
from probsft.sim.continuum import build, target_probs

COLUMNS = ("prior_strength", "base/mean_p_true", "e_star")


def noisy_label_probs(cfg: SimConfig, q: np.ndarray, y_star: np.ndarray) -> np.ndarray | None:
    """Distribution of a wrong label per context [C, V] (None = uniform over the V-1 others)."""
    if cfg.noise_kind == "uniform":
        return None
    w = q.copy()
    w[np.arange(len(y_star)), y_star] = 0.0
    return w / w.sum(-1, keepdims=True)


def boundary(cfg: SimConfig, leaning: str = "p", averse: str = "nll") -> list[dict]:
    """E* between ``averse`` and ``leaning`` for each prior strength (theory mode base models)."""
    from probsft.theory.risk import noise_threshold

    theory_cfg = cfg.replace(mode="theory")
    batch = build(theory_cfg, [(s, 0.0, cfg.seeds[0]) for s in cfg.prior_strengths])
    obj_a, obj_b = probsft.objective(averse), probsft.objective(leaning)
    rows = []
    for b, s in enumerate(cfg.prior_strengths):
        keep = batch.informative[b]
        q = torch.softmax(batch.z0[b][keep], -1).numpy()
        y = batch.y_star[b][keep].numpy()
        e_star = noise_threshold(obj_a, obj_b, q, y, noisy_label_probs=noisy_label_probs(cfg, q, y))
        e_star = math.nan if e_star is None else float(e_star)
        rows.append({"prior_strength": s,
                     "base/mean_p_true": float(target_probs(batch.z0[b][keep],
                                                            batch.y_star[b][keep]).mean()),
                     "e_star": e_star})
    return rows


def save_boundary(cfg: SimConfig, out_dir) -> list[dict]:
    """boundary.csv of :func:`boundary`; returns its rows as saved (floats rounded)."""
    rows = rounded(boundary(cfg))
    atomic_write_csv(Path(out_dir) / "boundary.csv", rows, COLUMNS)
    return rows


def read_boundary(path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
