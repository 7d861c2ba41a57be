"""probsft: probability-based objectives f(p) for supervised fine-tuning.

    >>> import probsft
    >>> obj = probsft.objective("-p^10")          # any spec of the grammar, see probsft.theory.spec
    >>> obj.W([0.5])                              # logit-gradient weight W_f(p) = s_f(p)(1-p)
    >>> loss = obj.loss(logits, labels)           # torch, mean over valid tokens

The source folders theory/, sim/, validate/ and figures/ are the subpackages probsft.theory,
probsft.sim, probsft.validate and probsft.figures through the symlinks in probsft/ (see
pyproject.toml and probsft.paths), so any checkout imports its own code.
"""

from probsft.errors import ConfigError, NonFiniteLogitsError, SpecError, UserError

__version__ = "0.1.0"
__all__ = ["objective", "fused_linear_loss", "recommend", "UserError", "SpecError", "ConfigError",
           "NonFiniteLogitsError", "__version__"]


def objective(spec):
    """Return the :class:`probsft.theory.objective.Objective` for a spec string (or pass one through)."""
    from probsft.theory.spec import parse

    return parse(spec)


def recommend(model, data, **kwargs):
    """Which objective for this model and data: probe + first-order theory + the measured curve
    shipped with probsft (``curve=``: another curve, paired.csv files, or False); see
    probsft.continuum.recommend."""
    from probsft.continuum.recommend import recommend as _recommend

    return _recommend(model, data, **kwargs)


def fused_linear_loss(*args, **kwargs):
    """Chunked "linear + f(p)" loss that never holds the full N x V logits; see probsft.theory.fused."""
    from probsft.theory.fused import fused_linear_loss as _fused

    return _fused(*args, **kwargs)
