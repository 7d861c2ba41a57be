"""Named simulator experiments, one per report figure (``probsft simulate --preset NAME``).

    crossover         learning mode: final accuracy vs prior strength, 6 objectives      (claim 1)
    crossover-theory  the same in theory mode (identity Gram, gradient flow on logits)   (claim 1)
    phase             theory mode, prior strength x noise rate, NLL vs −p, E* boundary   (claim 2)
    phase-early       the same at a short horizon T = 0.3 (where first order should hold) (claim 2)
    alpha             learning mode, (1-p^α)/α for α in 0.1..10 across the continuum     (claim 3)
    alpha-theory      the same in theory mode (metric r^T q)                               (claim 3)
    threshold         learning mode, NLL·1{p>=0.2}, top-10% / bottom-quantile training   (claim 4)
    fit               learning mode, mean training-target p after training, NLL vs −p    (claim 5)
    escape            time for a clean target to escape a near-uniform prior              (claim 6)

``full=True`` (``probsft simulate --full``, ``probsft reproduce --full``) uses more seeds and finer
grids. Defaults were chosen once from the scales of the model (horizon long enough for NLL to fit
the clean signal at the weak end; more training contexts than parameters in learning mode), not
tuned to make any claim come out.
"""

from __future__ import annotations

from probsft.errors import UserError
from probsft.sim.config import SimConfig
from probsft.sim.escape import EscapeConfig

CROSSOVER_OBJECTIVES = ("nll", "alpha(0.1)", "alpha(0.5)", "p", "alpha(10)", "nll@p>=0.2")
ALPHAS_QUICK = (0.1, 0.2, 0.3, 0.5, 0.7, 1, 2, 3, 5, 10)
ALPHAS_FULL = tuple(round(0.1 * k, 1) for k in range(1, 10)) + tuple(range(1, 11))
THRESHOLD_OBJECTIVES = ("nll", "p", "nll@p>=0.2", "nll@p>=Q90", "nll@p<=Q10", "nll@p<=Q50")


def _grid(n: int) -> tuple:
    return tuple(round(k / (n - 1), 4) for k in range(n))


def _learning(full: bool, **kw) -> SimConfig:
    base = dict(mode="learning", vocab_size=32, feature_dim=32, contexts=1024, eval_contexts=1024,
                lr=2.0, steps=500, optimizer="sgd", noise_rates=(0.2,), dtype="float32",
                seeds=(0, 1, 2, 3, 4) if full else (0, 1, 2))
    return SimConfig(**{**base, **kw})


def _theory(full: bool, **kw) -> SimConfig:
    base = dict(mode="theory", vocab_size=32, contexts=256, lr=0.1, steps=300,
                noise_rates=(0.2,), seeds=(0, 1, 2, 3, 4) if full else (0, 1, 2))
    return SimConfig(**{**base, **kw})


def preset(name: str, full: bool = False):
    """The config (SimConfig, or EscapeConfig for ``escape``) of a named experiment."""
    n = 21 if full else 11
    builders = {
        "crossover": lambda: _learning(full, objectives=CROSSOVER_OBJECTIVES,
                                       prior_strengths=_grid(n), noise_rates=(0.0, 0.2)),
        "crossover-theory": lambda: _theory(full, objectives=CROSSOVER_OBJECTIVES,
                                            prior_strengths=_grid(n), noise_rates=(0.0, 0.2)),
        "phase": lambda: _theory(full, objectives=("nll", "p"), prior_strengths=_grid(n),
                                 noise_rates=tuple(round(0.05 * k, 2) for k in range(11)),
                                 seeds=(0, 1, 2) if full else (0,)),
        "phase-early": lambda: preset("phase", full).replace(steps=3),
        "alpha": lambda: _learning(full, objectives=("nll",) + tuple(
            f"alpha({a})" for a in (ALPHAS_FULL if full else ALPHAS_QUICK)),
            prior_strengths=_grid(11 if full else 6), seeds=(0, 1, 2) if full else (0, 1)),
        "alpha-theory": lambda: _theory(full, objectives=("nll",) + tuple(
            f"alpha({a})" for a in (ALPHAS_FULL if full else ALPHAS_QUICK)),
            prior_strengths=_grid(11 if full else 6), seeds=(0, 1, 2) if full else (0, 1)),
        "threshold": lambda: _learning(full, objectives=THRESHOLD_OBJECTIVES,
                                       prior_strengths=_grid(9 if full else 5)),
        "fit": lambda: _learning(full, objectives=("nll", "p"), prior_strengths=_grid(n)),
        "escape": lambda: EscapeConfig(max_steps=5000) if not full else EscapeConfig(
            p0s=(1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2), max_steps=10000),
    }
    if name not in builders:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(builders)}")
    return builders[name]()


PRESETS = ("crossover", "crossover-theory", "phase", "phase-early", "alpha", "alpha-theory",
           "threshold", "fit", "escape")
