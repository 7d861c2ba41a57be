"""Summaries of saved sweep rows: seed means, winners, best α, first-order agreement.

Pure functions of the rows returned by :func:`probsft.sim.sweep.read_rows` (no simulation here), so
figures, the report and the tests all read the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

import probsft
from probsft.theory.expr import p as p_symbol


def primary_metric(rows) -> str:
    """``eval/expected_acc`` (r^T q) for theory-mode rows, where argmax accuracy is degenerate
    (any push on a uniform prior makes the label the argmax); ``eval/acc`` in learning mode."""
    return "eval/expected_acc" if rows and rows[0]["first_order/rate"] is not None else "eval/acc"


def seed_mean(rows, metric: str, by=("objective", "prior_strength", "noise_rate")) -> dict:
    """{key tuple: (mean, std, n)} of ``metric`` over seeds (diverged runs count as NaN)."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in by)].append(r[metric])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def curve(rows, objective: str, metric: str, x: str = "prior_strength", noise_rate=None):
    """Seed-mean curve of ``metric`` for one objective: (x values, means, stds), sorted by x."""
    sel = [r for r in rows if r["objective"] == objective
           and (noise_rate is None or r["noise_rate"] == noise_rate)]
    groups = defaultdict(list)
    for r in sel:
        groups[r[x]].append(r[metric])
    xs = sorted(groups)
    return (np.array(xs), np.array([np.mean(groups[v]) for v in xs]),
            np.array([np.std(groups[v]) for v in xs]))


def winners(rows, metric: str = "eval/acc", objectives=None) -> dict:
    """{(prior_strength, noise_rate): (best objective, its seed-mean)} by seed-mean ``metric``."""
    means = seed_mean(rows, metric)
    best = {}
    for (obj, s, E), (m, _, _) in means.items():
        if objectives is not None and obj not in objectives:
            continue
        if (s, E) not in best or m > best[(s, E)][1]:
            best[(s, E)] = (obj, m)
    return dict(sorted(best.items()))


def alpha_of(spec: str) -> float:
    """α of an objective whose weight is s_f(p) = p^α (the (1 - p^α)/α family, NLL as α = 0,
    −p as α = 1), read off the registry's derived s_f; NaN for any other objective."""
    obj = probsft.objective(spec)
    s = obj.s_expr
    if obj.interval is not None or obj.s_override is not None:
        return math.nan
    if s == 1:
        return 0.0
    if s == p_symbol:
        return 1.0
    if s.is_Pow and s.base == p_symbol and s.exp.is_number:
        return float(s.exp)
    return math.nan


def best_alpha(rows, metric: str = "eval/acc") -> list[tuple[float, float, float]]:
    """[(prior_strength, mean base p, best α)] for the α family (NLL counts as α = 0)."""
    alpha_rows = [r for r in rows if not math.isnan(alpha_of(r["objective"]))]
    base = seed_mean(rows, "base/mean_p", by=("prior_strength",))
    out = []
    for (s, _E), (spec, _m) in winners(alpha_rows, metric).items():
        out.append((s, base[(s,)][0], alpha_of(spec)))
    return out


def pairwise_agreement(rows, a: str = "nll", b: str = "p", metric: str = "eval/expected_acc"):
    """How often the first-order prediction picks the simulated winner of a vs b.

    Per (prior_strength, noise_rate, seed) cell: simulated winner = larger final ``metric``
    (r^T q, i.e. lower population risk), predicted winner = larger ``first_order/rate`` (§2.4).
    Returns (agreement fraction, list of per-cell dicts).
    """
    index = {(r["objective"], r["prior_strength"], r["noise_rate"], r["seed"]): r for r in rows}
    cells = []
    for (obj, s, E, seed), ra in index.items():
        rb = index.get((b, s, E, seed))
        if obj != a or rb is None:
            continue
        sim_a = ra[metric] >= rb[metric]
        pred_a = ra["first_order/rate"] >= rb["first_order/rate"]
        cells.append({"prior_strength": s, "noise_rate": E, "seed": seed,
                      "base/mean_p": ra["base/mean_p"], "sim_winner": a if sim_a else b,
                      "pred_winner": a if pred_a else b, "margin": ra[metric] - rb[metric]})
    hits = [c["sim_winner"] == c["pred_winner"] for c in cells]
    agree = float(np.mean(hits)) if hits else math.nan
    return agree, cells


def winners_at(rows, metric: str, objectives, prior_strength, noise_rate) -> tuple[str, float]:
    """(best objective among ``objectives`` by seed-mean ``metric`` in one cell, its mean)."""
    means = seed_mean([r for r in rows if r["objective"] in objectives
                       and r["prior_strength"] == prior_strength and r["noise_rate"] == noise_rate],
                      metric)
    (obj, _, _), (m, _, _) = max(means.items(), key=lambda kv: kv[1][0])
    return obj, m


def agreement_by_horizon(rows, lr: float, a: str = "nll", b: str = "p"):
    """[(horizon T = lr·steps, first-order agreement, cells)] for every recorded step count."""
    out = []
    for t in sorted({r["steps"] for r in rows}):
        agree, cells = pairwise_agreement([r for r in rows if r["steps"] == t], a, b)
        out.append((lr * t, agree, len(cells)))
    return out
