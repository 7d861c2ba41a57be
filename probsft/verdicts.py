"""The verdict rule, stated once: a prediction decided from a paired difference's intervals.

Every scientific verdict in probsft (the simulator's claims, probsft.sim.verdicts; the real-model
continuum cells, probsft.continuum.predictions; the adaptive objectives against the best fixed one,
probsft.continuum.analysis) is one of :data:`VERDICTS`, decided here from

* ``ci``: the 95% interval of Δ (the measured sign: *positive* when it lies above 0, *negative*
  when below);
* ``equivalence_ci``: the interval of the equivalence test (TOST at level 5% is the 90% interval;
  default ``ci``): *equivalent* when it lies inside the open band (−margin, +margin).

Predictions (:data:`PREDICTIONS`):

==============  ===========================  =============================  ===================
prediction      confirmed                    refuted                        equivalent
==============  ===========================  =============================  ===================
``positive``    sign positive                sign negative                  no sign, equivalent
``negative``    sign negative                sign positive                  no sign, equivalent
``tie``         equivalent                   a sign, not equivalent         –
``not_positive``  sign negative or equivalent  sign positive, not equivalent  –
``not_worse``   equivalence_ci low > −margin  sign negative                  –
==============  ===========================  =============================  ===================

Otherwise *inconclusive* (also when an interval is not finite). ``not_worse`` is a
non-inferiority test (the one-sided bound above −margin). A tie is never confirmed by failing to
find a difference: only by equivalence (STYLE.md §14).
"""

from __future__ import annotations

import math

VERDICTS = ("confirmed", "refuted", "equivalent", "inconclusive")
PREDICTIONS = ("positive", "negative", "tie", "not_positive", "not_worse")


def is_equivalent(interval: tuple[float, float], margin: float) -> bool:
    """TOST: both one-sided tests reject ⇔ the interval lies inside the open band (−margin, margin)."""
    return -margin < interval[0] and interval[1] < margin


def verdict(prediction: str, ci: tuple[float, float], equivalence_ci=None,
            margin: float = 0.0) -> str:
    """One of :data:`VERDICTS` for ``prediction`` (the table in the module docstring)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; one of {PREDICTIONS}")
    eq = ci if equivalence_ci is None else equivalence_ci
    if not all(math.isfinite(x) for x in (*ci, *eq)):
        return "inconclusive"
    pos, neg, equiv = ci[0] > 0, ci[1] < 0, is_equivalent(eq, margin)
    if prediction in ("positive", "negative"):
        if pos or neg:
            return "confirmed" if pos == (prediction == "positive") else "refuted"
        return "equivalent" if equiv else "inconclusive"
    if prediction == "tie":
        return "confirmed" if equiv else "refuted" if (pos or neg) else "inconclusive"
    if prediction == "not_positive":
        if neg or equiv:
            return "confirmed"
        return "refuted" if pos else "inconclusive"
    return "confirmed" if eq[0] > -margin else "refuted" if neg else "inconclusive"
