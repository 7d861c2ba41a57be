"""Does the probe's position on the continuum change the right objective? The rule against constants.

On measured cells (probsft.continuum.cells), three policies are scored cell by cell, each a hit
when its objective lies within the tie band of the cell's best (probsft.continuum.cells.score):

* **the rule** (probsft.continuum.rule, default ``band``), each position decided from the other
  positions only, its kernel width chosen on those others too (nested leave-one-position-out):
  the only policy that reads the probe's p;
* **the noise-kind lookup**: the same rule at an infinite width (the plain mean over the other
  positions of the cell's noise kind and optimizer), also leave-one-position-out: it reads the
  noise kind and the optimizer, never the position;
* **the best constant**: the one objective with the most hits over all cells, chosen on all of them
  (in-sample, which favours the constant: a conservative comparison for the rule).

A cell *says something* when at least one measured objective misses there (a cell where every
objective is within the band, e.g. all at the floor, is a hit for any choice). The comparison is
paired (the same cells), on the cells that say something: Δ = hit rate(rule) − hit rate(better of
the lookup and the constant), with a 95% interval from a bootstrap over positions (the cells of a
position are resampled together). **Position matters** when Δ ≥ :data:`MATTERS` (10 points) and
the interval excludes 0; otherwise `probsft recommend` says that its choice does not depend on
position on these curves and answers with the better position-blind policy.
"""

from __future__ import annotations

import math

import numpy as np

from probsft.continuum.cells import MARGIN, cell_groups, score
from probsft.continuum.rule import RULE, decide, dose_response, lopo_cells

MATTERS = 10.0          # points of hit rate by which the rule must beat the position-blind policy
BOOT, BOOT_SEED = 2000, 12345


def _cluster_interval(diffs_by_position: dict, boot: int = BOOT, seed: int = BOOT_SEED):
    """95% bootstrap interval of the mean paired difference, resampling positions (clusters)."""
    keys = sorted(diffs_by_position)
    sums = np.array([sum(diffs_by_position[k]) for k in keys], float)
    counts = np.array([len(diffs_by_position[k]) for k in keys], float)
    idx = np.random.default_rng(seed).integers(0, len(keys), size=(boot, len(keys)))
    means = sums[idx].sum(1) / np.maximum(counts[idx].sum(1), 1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def says_something(group: dict, margin: float = MARGIN) -> bool:
    """Whether a cell can tell policies apart: some measured objective misses the tie band of its
    best there (a cell where every objective is a hit, e.g. all at the floor, says nothing)."""
    return not all(score(group, s, margin)[0] for s in group)


def percent(hits) -> float:
    """The hit rate of ``hits`` in percent (NaN for none)."""
    return 100.0 * sum(hits) / len(hits) if hits else math.nan


def paired_difference(keys, hit_a, hit_b) -> tuple[float, tuple[float, float]]:
    """(Δ, 95% interval) of hit rate(a) − hit rate(b) in points over the cells ``keys``
    ((position, supervision, optimizer)), paired cell by cell, the interval by a bootstrap over
    positions (a position's cells resampled together; NaN with fewer than 2 positions)."""
    by_pos: dict = {}
    for k in keys:
        by_pos.setdefault(k[0], []).append(100.0 * (hit_a(k) - hit_b(k)))
    delta = float(np.mean([d for ds in by_pos.values() for d in ds])) if by_pos else math.nan
    ci = _cluster_interval(by_pos) if len(by_pos) >= 2 else (math.nan, math.nan)
    return delta, ci


def position_test(cells, rule: str = RULE, margin: float = MARGIN) -> dict:
    """The rule against the position-blind policies on ``cells`` (see the module docstring)."""
    groups = cell_groups(cells)
    says = {k: says_something(g, margin) for k, g in groups.items()}
    specs = sorted({s for g in groups.values() for s in g})
    const_hits = {s: sum(score(g, s, margin)[0] for g in groups.values() if s in g) for s in specs}
    constant = max(specs, key=lambda s: (const_hits[s], s == "nll"))
    rule_rows = {(r["position"], r["supervision"], r["optimizer"]): r["hit"]
                 for r in lopo_cells(cells, None, rule=rule, margin=margin)}
    lookup_rows = {(r["position"], r["supervision"], r["optimizer"]): (r["hit"], r["recommended"])
                   for r in lopo_cells(cells, math.inf, rule=rule, margin=margin)}
    keys = [k for k in groups if k in rule_rows and k in lookup_rows and constant in groups[k]]
    informative = [k for k in keys if says[k]]

    const_at = {k: score(groups[k], constant, margin)[0] for k in keys}
    hit_of = {"rule": lambda k: rule_rows[k], "lookup": lambda k: lookup_rows[k][0],
              "constant": lambda k: const_at[k]}
    summary = {name: {"all": percent([f(k) for k in keys]),
                      "informative": percent([f(k) for k in informative])}
               for name, f in hit_of.items()}
    blind = ("lookup" if summary["lookup"]["informative"] >= summary["constant"]["informative"]
             else "constant")
    delta, (lo, hi) = paired_difference(informative, hit_of["rule"], hit_of[blind])
    return {"rule": rule, "cells": len(keys), "informative_cells": len(informative),
            "positions": len({k[0] for k in keys}), "constant": constant,
            "hit_rates": summary, "position_blind": blind, "delta": delta, "ci": [lo, hi],
            "matters": bool(delta >= MATTERS and lo > 0)}


def blind_answer(test: dict, cells, supervision: str, optimizer: str, margin: float = MARGIN) -> str:
    """The position-blind policy's objective for a noise kind and optimizer: the lookup (the rule
    at infinite width over every position of that kind) or the constant, whichever ``test`` kept."""
    if test["position_blind"] == "constant":
        return test["constant"]
    measured = dose_response(cells, 0.5, supervision, optimizer, bandwidth=math.inf, margin=margin)
    if not measured:
        return test["constant"]
    return decide(measured, margin=margin, rule=test["rule"])["objective"]
