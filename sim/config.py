"""SimConfig: the frozen, validated description of one simulator sweep.

A sweep is the grid  objectives x prior_strengths x noise_rates x seeds, run either in

* ``mode="theory"``   — the paper's linearised setting (App. E.3: identity Gram, one-hot labels):
  gradient flow on each context's logits, population risk R = -E[r^T q];
* ``mode="learning"`` — teacher–student softmax regression: one weight matrix shared by all
  contexts, trained on noisy labels, evaluated on held-out contexts against the true token.

Configs reject bad values at construction, load strictly from JSON (an unknown key is a ConfigError)
and are saved next to every result they produce (``config.json``).

    cfg = probsft.config.load_config(SimConfig, path);  cfg.save(out_dir / "config.json")
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from probsft.config import config_from_dict, config_to_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write_json

MODES = ("theory", "learning")
OPTIMIZERS = ("sgd", "adam")
NOISE_KINDS = ("uniform", "model")
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """One sweep of the synthetic continuum.

    Attributes:
        mode: ``theory`` (logit gradient flow, identity Gram) or ``learning`` (shared parameters).
        objectives: objective specs, each parsed by ``probsft.objective`` (e.g. ``nll``, ``-p^10``,
            ``nll@p>=0.2``, ``nll@p<=Q10``; quantiles resolve per config on base-model target p).
        prior_strengths: the continuum dial in [0, 1]: 0 = uniform base model (model-weak),
            1 = confident on the true token (model-strong).
        noise_rates: label-noise rate E = Pr[label != true token], each in [0, 1).
        seeds: one independent draw of contexts/teacher/noise per seed (common across the grid).
        vocab_size: V.
        contexts: training contexts (token positions) per configuration.
        eval_contexts: held-out contexts (learning mode only).
        feature_dim: context-feature dimension d (learning mode only).
        uninformative_frac: fraction of training positions that are filler ("long, noisy
            supervision"): their label is uniform over V whatever the prior, and they are not
            evaluated.
        noise_kind: wrong labels drawn ``uniform`` over the V-1 other tokens, or from the base
            ``model`` (its distribution without the true token: plausible mistakes).
        prior_margin: true-token logit margin at prior_strength 1, in units of log V.
        prior_spread: relative spread of that margin across contexts (lognormal sigma).
        easy_frac: mixed difficulty: this fraction of the contexts is *easy* (known to the base
            model at full strength); the dial sets how much the base model knows of the rest, the
            *hard* group (see probsft.sim.continuum). 0 = one population.
        lr: step size (theory: Euler step dt of the gradient flow).
        steps: number of steps; the horizon is lr * steps.
        snapshots: further step counts (< steps) at which the results are also recorded (one row
            per snapshot, column ``steps``): several horizons for the cost of the longest.
        optimizer: ``sgd`` or ``adam`` (learning mode; theory mode is always plain gradient flow).
        dtype: torch dtype of the batched programs.
    """

    mode: str = "learning"
    objectives: tuple = ("nll", "p")
    prior_strengths: tuple = (0.0, 0.5, 1.0)
    noise_rates: tuple = (0.2,)
    seeds: tuple = (0,)
    vocab_size: int = 32
    contexts: int = 256
    eval_contexts: int = 1024
    feature_dim: int = 48
    uninformative_frac: float = 0.0
    noise_kind: str = "uniform"
    prior_margin: float = 3.0
    prior_spread: float = 0.5
    easy_frac: float = 0.0
    lr: float = 0.5
    steps: int = 200
    snapshots: tuple = ()
    optimizer: str = "sgd"
    dtype: str = "float64"

    def __post_init__(self):
        for name in ("objectives", "prior_strengths", "noise_rates", "seeds"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name} must be a list, got {value!r}")
            if len(value) == 0:
                raise ConfigError(f"{name} must not be empty")
            object.__setattr__(self, name, tuple(value))
        _choice("mode", self.mode, MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("noise_kind", self.noise_kind, NOISE_KINDS)
        _choice("dtype", self.dtype, DTYPES)
        import probsft
        for spec in self.objectives:
            probsft.objective(spec)                     # raises SpecError with the grammar
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives must be distinct, got {list(self.objectives)}")
        for s in self.prior_strengths:
            _number("prior_strengths", s, 0.0, 1.0)
        for e in self.noise_rates:
            _number("noise_rates", e, 0.0, 1.0, hi_open=True)
        for seed in self.seeds:
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ConfigError(f"seeds must be non-negative integers, got {seed!r}")
        for name, lo in (("vocab_size", 2), ("contexts", 1), ("eval_contexts", 1),
                         ("feature_dim", 1), ("steps", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
        _number("uninformative_frac", self.uninformative_frac, 0.0, 1.0, hi_open=True)
        _number("easy_frac", self.easy_frac, 0.0, 1.0, hi_open=True)
        if isinstance(self.snapshots, (str, bytes)) or not isinstance(self.snapshots, (list, tuple)):
            raise ConfigError(f"snapshots must be a list, got {self.snapshots!r}")
        object.__setattr__(self, "snapshots", tuple(self.snapshots))
        for k in self.snapshots:
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < self.steps:
                raise ConfigError(f"snapshots must be integers in [1, steps), got {k!r}")
        if len(set(self.snapshots)) != len(self.snapshots):
            raise ConfigError(f"snapshots must be distinct, got {list(self.snapshots)}")
        _number("prior_margin", self.prior_margin, 0.0, 100.0)
        _number("prior_spread", self.prior_spread, 0.0, 10.0)
        _number("lr", self.lr, 0.0, 1e6, lo_open=True)

    # ----- derived ------------------------------------------------------------------------------
    @property
    def horizon(self) -> float:
        """Training time lr * steps (theory mode: the gradient-flow time T)."""
        return self.lr * self.steps

    def replace(self, **changes) -> "SimConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config key(s) {sorted(unknown)}; "
                              f"valid keys: {field_names()}")
        return dataclasses.replace(self, **changes)

    # ----- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SimConfig":
        return config_from_dict(cls, data)

    def save(self, path) -> None:
        """Write the config as JSON atomically (tmp file, then rename); its floats exactly (an
        input, compared by equality on resume: not rounded as results are)."""
        atomic_write_json(Path(path), self.to_dict(), digits=None)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SimConfig)]


def _choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")


def _number(name, value, lo, hi, lo_open=False, hi_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ConfigError(f"{name} must lie in {interval}, got {value!r}")
