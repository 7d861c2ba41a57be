"""The sensitivity grid: where does each claim hold?  V × contexts × steps × optimizer.

    run_grid(GridConfig.at_scale("default"), out)     # out/V<V>-C<C>-<opt>/results.csv, winners.csv
    rows = read_winners(out / "winners.csv")           # one row per (claim, cell)

Each (V, contexts, optimizer) is one learning-mode sweep (``probsft.sim.sweep``: resumable, all
configurations of an objective in one batched tensor program); the steps axis costs nothing extra:
the sweep records the shorter step counts as snapshots of the longest run. Claims decided per cell
(noisy labels, E = ``noise_rate``; paired by seed, ``probsft.sim.verdicts``):

    weak-end     s = 0: NLL beats −p               (paper §6.5)
    strong-end   s = 1: −p beats NLL               (paper §6.4)
    alpha-trend  the best α of {NLL = 0, 0.5, 1 (−p), 2} is larger at s = 1 than at s = 0 (Fig. 6)

with each cell's prior contribution (clean NLL accuracy at s = 1 minus s = 0). ``winners.csv`` is
written before anything is drawn.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
from pathlib import Path

from probsft.config import config_from_dict, config_to_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write_csv, atomic_write_json
from probsft.sim.config import OPTIMIZERS, SimConfig
from probsft.sim.sweep import at_step, read_rows, run_sweep
from probsft.sim.verdicts import (Verdict, compare, label, outcome, paired, per_seed_best,
                                  prior_contribution)

CLAIMS = {"weak-end": "weak end, noisy labels: NLL beats −p",
          "strong-end": "strong end, noisy labels: −p beats NLL",
          "alpha-trend": "best α larger at the strong end than at the weak end"}
COLUMNS = ("claim", "vocab_size", "contexts", "steps", "optimizer", "winner", "estimate", "lo",
           "hi", "outcome", "prior_contribution")
ALPHA_OF = {"nll": 0.0, "alpha(0.5)": 0.5, "p": 1.0, "alpha(2)": 2.0}


@dataclasses.dataclass(frozen=True)
class GridConfig:
    vocab_sizes: tuple = (32, 128, 512)
    contexts: tuple = (128, 512)
    steps: tuple = (30, 300)
    optimizers: tuple = ("sgd", "adam")
    lrs: tuple = (2.0, 0.01)                 # one per optimizer
    seeds: tuple = (0, 1)
    noise_rate: float = 0.2
    feature_dim: int = 32
    eval_contexts: int = 1024

    def __post_init__(self):
        for name in ("vocab_sizes", "contexts", "steps", "optimizers", "lrs", "seeds"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if len(self.lrs) != len(self.optimizers) or any(o not in OPTIMIZERS for o in self.optimizers):
            raise ConfigError(f"optimizers must be from {OPTIMIZERS}, one lr each")
        if len(set(self.steps)) != len(self.steps):
            raise ConfigError("steps must be distinct")
        self.cells()                              # SimConfig validates every cell

    @classmethod
    def at_scale(cls, scale: str) -> "GridConfig":
        if scale == "quick":
            return cls(vocab_sizes=(32, 128), contexts=(128,), steps=(20, 60), seeds=(0,),
                       eval_contexts=512)
        if scale == "full":
            return cls(vocab_sizes=(32, 128, 512, 2048), contexts=(128, 512, 2048),
                       steps=(30, 100, 300, 1000), seeds=(0, 1, 2))
        return cls()

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data) -> "GridConfig":
        return config_from_dict(cls, data)

    def cells(self) -> dict[str, SimConfig]:
        """{folder name: the SimConfig of one (V, contexts, optimizer) sweep}."""
        steps = sorted(self.steps)
        out = {}
        for V, C, (opt, lr) in itertools.product(self.vocab_sizes, self.contexts,
                                                 zip(self.optimizers, self.lrs)):
            out[f"V{V}-C{C}-{opt}"] = SimConfig(
                mode="learning", objectives=tuple(ALPHA_OF), prior_strengths=(0.0, 1.0),
                noise_rates=(0.0, self.noise_rate), seeds=self.seeds, vocab_size=V, contexts=C,
                eval_contexts=self.eval_contexts, feature_dim=self.feature_dim, lr=lr,
                steps=steps[-1], snapshots=tuple(steps[:-1]), optimizer=opt, dtype="float32")
        return out


def run_grid(cfg: GridConfig, out_dir, progress: bool = True) -> list[dict]:
    """Run or resume every cell, then save ``winners.csv``; returns its rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != cfg.to_dict():
        raise ConfigError(f"{out_dir} holds results of a different grid; pass another --out")
    atomic_write_json(cfg_path, cfg.to_dict(), digits=None)          # a config: exact
    rows = []
    for name, sim_cfg in cfg.cells().items():
        sweep_rows = run_sweep(sim_cfg, out_dir / name, progress)
        for t in sorted(cfg.steps):
            rows += decide(at_step(sweep_rows, t), sim_cfg, t, cfg.noise_rate)
    atomic_write_csv(out_dir / "winners.csv", rows, COLUMNS)
    return rows


def decide(rows, cfg: SimConfig, steps: int, E: float) -> list[dict]:
    """The three claims in one cell (rows measured at ``steps``)."""
    prior = prior_contribution(rows)
    cell = dict(vocab_size=cfg.vocab_size, contexts=cfg.contexts, steps=steps,
                optimizer=cfg.optimizer, prior_contribution=prior)
    out = []
    for claim, (a, b, s) in (("weak-end", ("nll", "p", 0.0)), ("strong-end", ("p", "nll", 1.0))):
        v = compare(rows, CLAIMS[claim], "grid", a, b, "eval/acc", prior, prior_strength=s,
                    noise_rate=E)
        out.append({"claim": claim, **cell, "winner": a if v.estimate > 0 else b,
                    "estimate": v.estimate, "lo": v.lo, "hi": v.hi, "outcome": v.outcome})
    weak, strong = (per_seed_best(rows, "eval/acc", ALPHA_OF, ALPHA_OF.get, prior_strength=s,
                                  noise_rate=E) for s in (0.0, 1.0))
    est, lo, hi, _ = paired(strong, weak)
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    out.append({"claim": "alpha-trend", **cell,
                "winner": f"{mean(weak):g}→{mean(strong):g}", "estimate": est, "lo": lo,
                "hi": hi, "outcome": outcome(lo, hi, prior, margin=0.0)})
    return out


def read_winners(path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("vocab_size", "contexts", "steps"):
            r[k] = int(r[k])
        for k in ("estimate", "lo", "hi", "prior_contribution"):
            r[k] = float(r[k])
    return rows


def grid_verdicts(folder) -> list[Verdict]:
    """Per claim: in how many cells it is confirmed / refuted, overall and per optimizer."""
    rows = read_winners(Path(folder) / "winners.csv")
    out = []
    for claim, text in CLAIMS.items():
        sel = [r for r in rows if r["claim"] == claim]
        matters = [r for r in sel if r["outcome"] != "prior does not matter here"]
        parts = []
        for opt in dict.fromkeys(r["optimizer"] for r in sel):
            m = [r for r in matters if r["optimizer"] == opt]
            c = sum(r["outcome"] == "confirmed" for r in m)
            f = sum(r["outcome"] == "refuted" for r in m)
            parts.append(f"{opt}: confirmed {c}, refuted {f} of {len(m)}")
        conf = sum(r["outcome"] == "confirmed" for r in matters)
        ref = sum(r["outcome"] == "refuted" for r in matters)
        res = ("confirmed" if matters and conf == len(matters) else
               "refuted" if matters and ref == len(matters) else "inconclusive")
        measured = (f"{len(matters)} of {len(sel)} cells have a prior contribution ≥ 0.1; among "
                    f"them {'; '.join(parts)}")
        out.append(Verdict(text, Path(folder).name, measured,
                           label(res, math.nan) if matters else "prior does not matter here",
                           conf / len(matters) if matters else math.nan))
    return out
