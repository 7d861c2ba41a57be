"""Verdicts of the simulator experiments, computed from saved rows (the science; no formatting).

A verdict compares two objectives (or a statistic against a prediction) *paired by seed*: the same
seed gives both objectives the same contexts, teacher and noise draws (common random numbers), so
the per-seed difference d_k = metric(a) - metric(b) is the unit of evidence. With n seeds,

    estimate = mean(d),   95% interval = estimate ± t_{0.975, n-1} · sd(d)/sqrt(n)

and the outcome is one of (STYLE.md §14)

    confirmed      the interval lies on the predicted side of 0
    refuted        the interval lies on the other side of 0
    equivalent     the interval lies inside ±EQUIV_MARGIN (a predicted tie, or no effect)
    inconclusive   otherwise (also with one seed, where no interval exists)

Every learning-mode verdict also carries the preset's **prior contribution**: held-out accuracy of
clean-label NLL at prior strength 1 minus that at 0 (theory mode: r^T q, the metric it reports).
Below ``PRIOR_MATTERS`` the verdict is labelled "prior does not matter here" whatever the numbers
say: a setting where the base model adds nothing by the end cannot test a claim about the prior.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from probsft.verdicts import verdict

EQUIV_MARGIN = 0.01
PRIOR_MATTERS = 0.1
OUTCOMES = ("confirmed", "refuted", "equivalent", "inconclusive", "prior does not matter here")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim decided on one saved run (``where`` names the run, e.g. ``crossover/adam``)."""

    claim: str                  # the paper's prediction, one line
    where: str
    measured: str               # what was measured, one line (numbers)
    outcome: str                # one of OUTCOMES
    estimate: float = math.nan  # paired mean difference (predicted direction positive)
    lo: float = math.nan        # its 95% interval
    hi: float = math.nan
    prior_contribution: float = math.nan
    setting: str = ""           # V, contexts, steps, optimizer of the run


def by_seed(rows, metric: str, **where) -> dict[int, float]:
    """{seed: metric} of the rows matching ``where`` (objective=..., prior_strength=..., ...)."""
    return {r["seed"]: r[metric] for r in rows if all(r[k] == v for k, v in where.items())}


def paired(a: dict, b: dict) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) of a[seed] - b[seed] over the seeds both have; 95% t-interval."""
    from scipy.stats import t as student_t

    d = np.array([a[k] - b[k] for k in sorted(set(a) & set(b))], dtype=float)
    n = len(d)
    if n == 0 or not np.all(np.isfinite(d)):
        return math.nan, math.nan, math.nan, n
    mean = float(d.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    half = float(student_t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def label(result: str, prior: float = math.nan) -> str:
    """``result``, or "prior does not matter here" when the prior contributes < PRIOR_MATTERS."""
    return "prior does not matter here" if math.isfinite(prior) and prior < PRIOR_MATTERS else result


def outcome(lo: float, hi: float, prior: float = math.nan, margin: float = EQUIV_MARGIN,
            at_least: bool = False) -> str:
    """The outcome of an interval [lo, hi] for a prediction "> 0" (see the module docstring);
    ``at_least``: the prediction is "≥ 0", confirmed by lo > -margin (a win or a tie): the one
    verdict rule, probsft.verdicts, with prediction ``positive`` or ``not_worse``."""
    return label(verdict("not_worse" if at_least else "positive", (lo, hi), margin=margin), prior)


def prior_contribution(rows, metric: str = "eval/acc") -> float:
    """Seed-mean ``metric`` of clean-label NLL at the strongest prior minus at the weakest; NaN
    when the rows hold no clean NLL at both ends."""
    sel = [r for r in rows if r["objective"] == "nll" and r["noise_rate"] == 0.0]
    if not sel:
        return math.nan
    s = sorted({r["prior_strength"] for r in sel})
    if len(s) < 2:
        return math.nan
    mean = lambda v: float(np.mean([r[metric] for r in sel if r["prior_strength"] == v]))  # noqa: E731
    return mean(s[-1]) - mean(s[0])


def compare(rows, claim: str, where: str, better: str, worse: str, metric: str, prior: float,
            setting: str = "", margin: float = EQUIV_MARGIN, at_least: bool = False,
            **cell) -> Verdict:
    """Verdict on "``better`` beats ``worse`` on ``metric``" in the cell ``cell`` (prior_strength,
    noise_rate), paired by seed."""
    a = by_seed(rows, metric, objective=better, **cell)
    b = by_seed(rows, metric, objective=worse, **cell)
    est, lo, hi, n = paired(a, b)
    ma, mb = (float(np.mean(list(x.values()))) if x else math.nan for x in (a, b))
    at = ", ".join(f"{k.replace('prior_strength', 's').replace('noise_rate', 'E')}={v:g}"
                   for k, v in cell.items())
    measured = (f"{at}: `{better}` {ma:.3f} vs `{worse}` {mb:.3f} ({metric}); difference "
                f"{est:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}], {n} seeds" if n > 1 else f", {n} seed"))
    return Verdict(claim, where, measured, outcome(lo, hi, prior, margin, at_least), est, lo, hi,
                   prior, setting)


def winner(rows, metric: str, objectives, **cell) -> tuple[str, float]:
    """(objective with the best seed-mean ``metric`` in ``cell``, that mean)."""
    means = {}
    for o in objectives:
        v = [r[metric] for r in rows if r["objective"] == o
             and all(r[k] == x for k, x in cell.items())]
        if v:
            means[o] = float(np.mean(v))
    best = max(means, key=lambda o: means[o])
    return best, means[best]


def per_seed_best(rows, metric: str, objectives, value, **cell) -> dict[int, float]:
    """{seed: value(objective with the best ``metric`` for that seed in ``cell``)}."""
    groups = defaultdict(dict)
    for r in rows:
        if r["objective"] in objectives and all(r[k] == x for k, x in cell.items()):
            groups[r["seed"]][r["objective"]] = r[metric]
    return {seed: value(max(g, key=g.get)) for seed, g in groups.items()}
