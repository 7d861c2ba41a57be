"""Escape time from a near-uniform prior (paper §6 prediction 2; the scaling is an inference).

One context, clean label y, base logits uniform except the target's, set so that q_y(0) = p0. Under
the gradient flow dz/dt = s_f(q_y)(e_y - q) (identity Gram, Lemma 3.1) the target probability obeys,
for large V,  dp/dt ≈ s_f(p) p (1 - p)^2, so the time to reach p = 1/2 is

    NLL (s = 1): t ≈ log(1/p0);    −p (s = p): t ≈ 1/p0;    f_α (s = p^α): t ∝ p0^-α

The flow is integrated by adaptive Euler steps (each step moves no logit by more than ``h``), all p0
of one objective in one [B, V] tensor; ``escape_time`` is the first time q_y >= ``level``.
Fitted slopes: d log t / d log(1/p0) (1 for −p, ->0 for NLL) and d t / d log(1/p0) (≈1 for NLL).

    rows = run_escape(EscapeConfig(), out_dir)       # writes out_dir/config.json, escape.csv
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import probsft
from probsft.config import config_from_dict, config_to_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write_csv, atomic_write_json, rounded
from probsft.sim.config import _number
from probsft.sim.dynamics import probe_values
from probsft.sim.sweep import single_thread
from probsft.theory.statistics import token_stats_torch

COLUMNS = ("objective", "label", "p0", "escape_time", "reached")


@dataclasses.dataclass(frozen=True)
class EscapeConfig:
    """Escape-time experiment: objectives x initial target probabilities p0."""

    objectives: tuple = ("nll", "alpha(0.5)", "p")
    p0s: tuple = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)
    vocab_size: int = 10000
    level: float = 0.5
    h: float = 0.01
    max_steps: int = 20000

    def __post_init__(self):
        for name in ("objectives", "p0s"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for spec in self.objectives:
            probsft.objective(spec)
        if not isinstance(self.vocab_size, int) or self.vocab_size < 3:
            raise ConfigError(f"vocab_size must be an integer >= 3, got {self.vocab_size!r}")
        for p0 in self.p0s:
            _number("p0s", p0, 1.0 / self.vocab_size, self.level, hi_open=True)
        _number("level", self.level, 0.0, 1.0, lo_open=True, hi_open=True)
        _number("h", self.h, 0.0, 1.0, lo_open=True)
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ConfigError(f"max_steps must be a positive integer, got {self.max_steps!r}")

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EscapeConfig":
        return config_from_dict(cls, data)


def initial_logits(p0s, V: int) -> torch.Tensor:
    """[B, V] float64 logits with target (index 0) probability p0 and the rest uniform."""
    p0 = torch.tensor(p0s, dtype=torch.float64)
    z = torch.zeros(len(p0s), V, dtype=torch.float64)
    z[:, 0] = torch.log(p0 * (V - 1) / (1 - p0))
    return z


@torch.no_grad()
def escape_times(obj, cfg: EscapeConfig) -> tuple[np.ndarray, np.ndarray]:
    """First time q_0 >= level for each p0 (adaptive Euler), and whether it was reached."""
    z = initial_logits(cfg.p0s, cfg.vocab_size)
    B = z.shape[0]
    t = torch.zeros(B, dtype=torch.float64)
    hit = torch.full((B,), float("nan"), dtype=torch.float64)
    # adaptive objectives: alpha(auto) resolved on each start p0, DEFT's sum q^2 from the current z
    fixed = {k: v[:, 0] for k, v in probe_values(obj, torch.softmax(z, -1)[:, :1]).items()}
    for _ in range(cfg.max_steps):
        logq = torch.log_softmax(z, -1)
        p = logq[:, 0].exp()
        newly = torch.isnan(hit) & (p >= cfg.level)
        hit = torch.where(newly, t, hit)
        if not torch.isnan(hit).any():
            break
        stats = {**fixed, **token_stats_torch(obj.token_stats, z, torch.logsumexp(z, -1))}
        s = obj.s_of_logp(logq[:, 0], stats)
        if obj.interval is not None:
            s = torch.where(obj.interval.indicator(p), s, torch.zeros_like(s))
        zdot = -s[:, None] * logq.exp()                       # s (e_y - q)
        zdot[:, 0] += s
        speed = zdot.abs().amax(-1)
        dt = torch.where(speed > 0, cfg.h / speed, torch.full_like(speed, float("inf")))
        z += dt[:, None] * torch.nan_to_num(zdot)
        t += dt
    reached = ~torch.isnan(hit)
    return hit.numpy(), reached.numpy()


def run_escape(cfg: EscapeConfig, out_dir, progress: bool = True) -> list[dict]:
    """Measure escape times for every objective; save escape.csv + config.json first. A finished
    run in ``out_dir`` with the same config is read back, not recomputed."""
    out_dir = Path(out_dir)
    cfg_path, csv_path = out_dir / "config.json", out_dir / "escape.csv"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != cfg.to_dict():
        raise ConfigError(f"{out_dir} holds results of a different config; pass another --out")
    atomic_write_json(cfg_path, cfg.to_dict(), digits=None)          # a config: exact
    if csv_path.exists():
        rows = read_escape(csv_path)
        if [r["objective"] for r in rows[::len(cfg.p0s)]] == list(cfg.objectives):
            return rows
    rows = []
    for spec in tqdm(cfg.objectives, desc="sim escape", disable=not progress):
        obj = probsft.objective(spec)
        with single_thread():
            times, reached = escape_times(obj, cfg)
        rows += [rounded({"objective": spec, "label": obj.label, "p0": p0, "escape_time": float(t),
                          "reached": int(r)}) for p0, t, r in zip(cfg.p0s, times, reached)]
    atomic_write_csv(csv_path, rows, COLUMNS)
    return rows


def read_escape(path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["p0"], r["escape_time"] = float(r["p0"]), float(r["escape_time"])
        r["reached"] = int(r["reached"])
    return rows


def fit_slopes(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per objective: least-squares slopes of log t and of t vs log(1/p0) (reached runs only)."""
    out = {}
    for spec in dict.fromkeys(r["objective"] for r in rows):
        sel = [r for r in rows if r["objective"] == spec and r["reached"]]
        if len(sel) < 2:
            out[spec] = {"loglog": math.nan, "linlog": math.nan, "n": len(sel)}
            continue
        x = np.log([1.0 / r["p0"] for r in sel])
        t = np.array([r["escape_time"] for r in sel])
        out[spec] = {"loglog": float(np.polyfit(x, np.log(t), 1)[0]),
                     "linlog": float(np.polyfit(x, t, 1)[0]), "n": len(sel)}
    return out
