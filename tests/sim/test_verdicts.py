"""Paired verdicts: the interval, the four outcomes, the prior's contribution label."""

import math

import pytest

from probsft.sim.verdicts import (PRIOR_MATTERS, compare, outcome, paired, prior_contribution)


def _row(obj, s, E, seed, acc):
    return {"objective": obj, "prior_strength": s, "noise_rate": E, "seed": seed, "eval/acc": acc}


def test_paired_interval_matches_a_hand_computed_t_interval():
    est, lo, hi, n = paired({0: 0.5, 1: 0.7, 2: 0.6}, {0: 0.4, 1: 0.5, 2: 0.6})
    # d = (0.1, 0.2, 0.0): mean 0.1, sd 0.1, t_{0.975, 2} = 4.302653
    assert n == 3 and est == pytest.approx(0.1)
    assert hi - est == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert lo == pytest.approx(2 * est - hi)
    assert math.isnan(paired({0: 1.0}, {0: 0.5})[1])           # one seed: no interval


@pytest.mark.parametrize("lo, hi, prior, expected", [
    (0.01, 0.05, 0.5, "confirmed"), (-0.05, -0.01, 0.5, "refuted"),
    (-0.005, 0.008, 0.5, "equivalent"), (-0.05, 0.05, 0.5, "inconclusive"),
    (0.01, 0.05, PRIOR_MATTERS - 1e-9, "prior does not matter here"),
    (0.01, 0.05, math.nan, "confirmed"), (math.nan, math.nan, 0.5, "inconclusive")])
def test_outcomes(lo, hi, prior, expected):
    assert outcome(lo, hi, prior) == expected


def test_at_least_accepts_a_tie():
    assert outcome(-0.005, 0.02, 0.5, at_least=True) == "confirmed"
    assert outcome(-0.02, 0.02, 0.5, at_least=True) == "inconclusive"


def test_prior_contribution_and_compare():
    rows = [_row("nll", s, 0.0, k, acc) for k in (0, 1) for s, acc in ((0.0, 0.3), (1.0, 0.8))]
    rows += [_row("p", 1.0, 0.2, k, 0.7 + 0.01 * k) for k in (0, 1)]
    rows += [_row("nll", 1.0, 0.2, k, 0.6 + 0.01 * k) for k in (0, 1)]
    assert prior_contribution(rows) == pytest.approx(0.5)
    v = compare(rows, "claim", "here", "p", "nll", "eval/acc", prior_contribution(rows),
                prior_strength=1.0, noise_rate=0.2)
    assert v.estimate == pytest.approx(0.1) and v.outcome == "confirmed"   # zero-spread pairs
    weak = [dict(r, **{"eval/acc": 0.3}) if r["prior_strength"] == 1.0 and r["noise_rate"] == 0
            else r for r in rows]
    v = compare(weak, "claim", "here", "p", "nll", "eval/acc", prior_contribution(weak),
                prior_strength=1.0, noise_rate=0.2)
    assert v.outcome == "prior does not matter here"
