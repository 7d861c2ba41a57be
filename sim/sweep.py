"""Vectorised, resumable sweeps: objectives x prior_strengths x noise_rates x seeds.

    from probsft.sim.sweep import run_sweep
    rows = run_sweep(cfg, out_dir)          # writes out_dir/config.json and out_dir/results.csv

All (prior_strength, noise_rate, seed) cells of one objective advance together in one batched tensor
program (:mod:`probsft.sim.dynamics`); objectives are different functions, so they run one after the
other. ``results.csv`` is rewritten atomically after each objective, so an interrupted sweep resumes
by skipping the objectives already saved (the saved config must equal the requested one).

Columns: objective, label, prior_strength, noise_rate, seed, steps (the step count measured; one row
per ``cfg.snapshots`` entry and the final step), the base model's statistics (``base/mean_p`` Eq. 5,
``base/frac_p055`` Table 6, ``base/expected_acc``; ``base/eval_acc`` and ``base/eval_expected_acc``
are the same metrics as the trained ``eval/*``), the trained results (``train/mean_p``,
``eval/acc``, ``eval/expected_acc``, ``eval/risk`` = -r^T q, per difficulty group ``eval/*_easy``
and ``eval/*_hard``, ``diverged``) and,
in theory mode, ``first_order/rate``: the exact initial risk-reduction rate E_x[Ṙ_f] of the
objective on these contexts and labels (paper §2.4, probsft.theory.risk); empty in learning mode.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

import probsft
from probsft.errors import ConfigError
from probsft.sim import dynamics
from probsft.files import atomic_write_csv, rounded
from probsft.sim.config import SimConfig
from probsft.sim.continuum import Batch, build, capability, target_probs

KEYS = ("objective", "label", "prior_strength", "noise_rate", "seed", "steps")
METRICS = ("base/mean_p", "base/frac_p055", "base/expected_acc", "base/eval_acc",
           "base/eval_expected_acc", "train/mean_p", "eval/acc", "eval/expected_acc", "eval/risk",
           "eval/acc_easy", "eval/acc_hard", "eval/expected_acc_easy", "eval/expected_acc_hard",
           "diverged", "first_order/rate")
COLUMNS = KEYS + METRICS


def grid(cfg: SimConfig) -> list[tuple[float, float, int]]:
    """All (prior_strength, noise_rate, seed) cells, in a fixed order."""
    return list(itertools.product(cfg.prior_strengths, cfg.noise_rates, cfg.seeds))


def first_order_rate(obj, batch: Batch, bnds) -> torch.Tensor:
    """E_x[Ṙ_f(x)] at t = 0 per configuration [B] (theory mode; paper §2.4, Corollary E.6).

    Ṙ_f(x) = q_{y*} s_f(q_ỹ) 1{q_ỹ in I} <e_{y*} - q, e_ỹ - q>, averaged over evaluated contexts.
    """
    from probsft.theory.risk import risk_rate

    q = torch.softmax(batch.z0, -1)                                          # [B, C, V]
    B, C, V = q.shape
    keep = batch.informative.to(q.dtype)
    if not obj.needs_probe:
        # one call on all B*C contexts: [B*C, V] -> [B*C] -> [B, C]
        rate = risk_rate(obj, q.reshape(B * C, V).numpy(), batch.y_star.reshape(-1).numpy(),
                         batch.labels.reshape(-1).numpy())
        rate = torch.as_tensor(rate, dtype=q.dtype).reshape(B, C)
    else:  # quantile thresholds and probe-set alphas differ per configuration
        rate = torch.stack([torch.as_tensor(risk_rate(
            obj.resolve(target_probs(batch.z0[b], batch.labels[b]).numpy()),
            q[b].numpy(), batch.y_star[b].numpy(), batch.labels[b].numpy()), dtype=q.dtype)
            for b in range(B)])
    return (rate * keep).sum(-1) / keep.sum(-1).clamp(min=1)


def run_objective(cfg: SimConfig, spec: str, batch: Batch) -> dict[int, dict[str, torch.Tensor]]:
    """Train/flow one objective on every configuration of ``batch``: {steps: metrics, each [B]}
    for the final step and every snapshot."""
    obj = probsft.objective(spec)
    base_p = target_probs(batch.train_logits(), batch.labels)                # [B, C]
    bnds = dynamics.bounds(obj, base_p)
    fixed = dynamics.probe_values(obj, base_p)
    if cfg.mode == "theory":
        states = dynamics.theory_flow(obj, batch, cfg.lr, cfg.steps, bnds, cfg.snapshots, fixed)
    else:
        states = dynamics.learn(obj, batch, cfg.lr, cfg.steps, cfg.optimizer, bnds, cfg.snapshots,
                                fixed)
    shared = capability(batch)
    if cfg.mode == "theory":
        shared["first_order/rate"] = first_order_rate(obj, batch, bnds)
    out = {}
    for t in sorted(states):
        out[t] = {**shared, **dynamics.metrics(batch, states[t], cfg.mode)}
        out[t]["eval/risk"] = -out[t]["eval/expected_acc"]
    return out


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread, then restore. The per-step tensors are small, and on a
    shared 2-core machine a second spinning OpenMP thread made sweeps up to 5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def chunk_size(cfg: SimConfig, elements: int = 2 ** 18) -> int:
    """Configurations per batch: ~``elements`` logits [B, C, V] per batch keeps the working set in
    cache (bigger batches of big runs are slower on CPU, not faster)."""
    return max(1, elements // (cfg.contexts * cfg.vocab_size))


def run_sweep(cfg: SimConfig, out_dir, progress: bool = True,
              chunk: int | None = None) -> list[dict]:
    """Run (or resume) the sweep into ``out_dir``; returns all result rows."""
    with torch.no_grad(), single_thread():
        return _run_sweep(cfg, Path(out_dir), progress, chunk or chunk_size(cfg))


def _run_sweep(cfg: SimConfig, out_dir: Path, progress: bool, chunk: int) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path, csv_path = out_dir / "config.json", out_dir / "results.csv"
    if cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        if saved != cfg.to_dict():
            raise ConfigError(f"{out_dir} holds results of a different config; pass another --out "
                              "or delete that folder to start again")
    cfg.save(cfg_path)
    rows = read_rows(csv_path) if csv_path.exists() else []
    cells = grid(cfg)
    per_objective = len(cells) * (len(cfg.snapshots) + 1)
    done = {spec for spec in cfg.objectives
            if sum(r["objective"] == spec for r in rows) == per_objective}
    rows = [r for r in rows if r["objective"] in done]
    todo = [spec for spec in cfg.objectives if spec not in done]
    bar = tqdm(total=len(todo) * len(cells), desc=f"sim {out_dir.name}", unit="run",
               disable=not progress, initial=0)
    batches = [build(cfg, cells[i:i + chunk]) for i in range(0, len(cells), chunk)] if todo else []
    for spec in todo:
        obj = probsft.objective(spec)
        new = []
        for start, batch in zip(range(0, len(cells), chunk), batches):
            for t, res in run_objective(cfg, spec, batch).items():
                for j, (s, E, seed) in enumerate(cells[start:start + chunk]):
                    row = {"objective": spec, "label": obj.label, "prior_strength": s,
                           "noise_rate": E, "seed": seed, "steps": t}
                    row.update({k: float(res[k][j]) if k in res else None for k in METRICS})
                    new.append(rounded(row))        # what results.csv holds, resumed or not
            bar.update(len(batch.labels))
        rows += new
        write_rows(csv_path, rows)
    bar.close()
    return rows


def at_step(rows, steps=None) -> list[dict]:
    """The rows measured at ``steps`` (default: the final step, the largest in ``rows``)."""
    steps = max(r["steps"] for r in rows) if steps is None and rows else steps
    return [r for r in rows if r["steps"] == steps]


def write_rows(path: Path, rows: list[dict]) -> None:
    """``rows`` as results.csv (floats to probsft.files.SIGNIFICANT digits), atomically."""
    atomic_write_csv(path, rows, COLUMNS)


def read_rows(path) -> list[dict]:
    """Rows of a results.csv with numbers parsed (objective and label stay text)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in COLUMNS[2:]:
            r[k] = None if r[k] == "" else int(r[k]) if k in ("seed", "steps") else float(r[k])
    return rows
