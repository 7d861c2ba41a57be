"""Paired statistics and the verdict rule on synthetic inputs with known answers."""

import math

import numpy as np
import pytest

from probsft.continuum import predictions as pred
from probsft.validate.stats import crossover, item_bootstrap, paired, seed_interval, unpaired_tie_rule


def test_seed_interval_is_the_t_interval():
    d = [0.01, 0.03, 0.02, 0.04, 0.00]          # mean 0.02, sd 0.0158, t(0.975, 4) = 2.7764
    lo, hi = seed_interval(d, 0.95)
    half = 2.7764451 * np.std(d, ddof=1) / math.sqrt(5)
    assert (lo, hi) == pytest.approx((0.02 - half, 0.02 + half), abs=1e-7)
    lo90, hi90 = seed_interval(d, 0.90)
    assert lo < lo90 < hi90 < hi


def test_paired_uses_within_seed_differences():
    # seeds differ a lot (shared by both objectives), the difference is always exactly +0.05
    common = np.array([0.2, 0.5, 0.8, 0.35, 0.6])
    st = paired(common + 0.05, common)
    assert st["delta"] == pytest.approx(0.05)
    assert st["ci_low"] == pytest.approx(0.05) and st["ci_high"] == pytest.approx(0.05)
    # the unpaired rule calls the same data a tie: its SE carries the seed-to-seed spread
    assert unpaired_tie_rule(common + 0.05, common, min_gap=0.02)
    assert pred.verdict("p", (st["ci_low"], st["ci_high"]), (st["tost_low"], st["tost_high"])) \
        == "confirmed"


def test_tost_is_not_the_old_tie_rule():
    # mean 0 but noisy seeds: the old rule |Δ| <= max(0.02, 2 SE) says tie, TOST cannot show
    # equivalence within ±2 points -> inconclusive
    a = np.array([0.10, -0.08, 0.06, -0.09, 0.01])
    b = np.zeros(5)
    assert unpaired_tie_rule(a, b, 0.02)
    st = paired(a, b)
    assert not pred.is_equivalent((st["tost_low"], st["tost_high"]))
    assert pred.verdict("tie", (st["ci_low"], st["ci_high"]), (st["tost_low"], st["tost_high"])) \
        == "inconclusive"
    # |Δ| = 1.9 points, just inside the old 2-point gap, but the 90% CI reaches past +2 points
    a = np.array([0.019, 0.024, 0.014, 0.021, 0.017])
    assert unpaired_tie_rule(a, b, 0.02)
    st = paired(a, b)
    assert st["tost_high"] > 0.02 and not pred.is_equivalent((st["tost_low"], st["tost_high"]))
    # a precise small effect: the old rule with tol = 2·SE only would call it a win, TOST a tie
    a = np.array([0.010, 0.011, 0.009, 0.010, 0.010])
    st = paired(a, b)
    assert abs(a.mean()) > 2 * a.std(ddof=1) / math.sqrt(5)
    assert pred.is_equivalent((st["tost_low"], st["tost_high"]))
    assert pred.verdict("tie", (st["ci_low"], st["ci_high"]), (st["tost_low"], st["tost_high"])) \
        == "confirmed"


def test_item_bootstrap_widens_the_interval_and_is_deterministic():
    rng = np.random.default_rng(0)
    a = (rng.random((5, 200)) < 0.5).astype(float)
    a[:, :] = a[0]                    # identical across seeds: the seed interval has width 0
    b = np.zeros_like(a)
    st = paired(a, b)
    assert st["se_seed"] < 1e-12 and st["se_item"] > 0.02
    assert st["ci_low"] < a.mean() < st["ci_high"] and st["ci_high"] - st["ci_low"] > 0.1
    assert paired(a, b) == st                                   # fixed bootstrap seed
    lo, hi, sd = item_bootstrap(a - b, 0.95)
    se = a[0].std(ddof=1) / math.sqrt(200)
    assert sd == pytest.approx(se, rel=0.1) and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_mde_is_the_power_formula():
    d = np.array([0.01, 0.03, 0.02, 0.04, 0.00])
    st = paired(d, np.zeros(5))
    se = d.std(ddof=1) / math.sqrt(5)
    assert st["mde"] == pytest.approx((2.7764451 + 0.9409646) * se, rel=1e-6)


@pytest.mark.parametrize("prediction, ci95, ci90, expected", [
    ("p", (0.01, 0.05), (0.015, 0.045), "confirmed"),
    ("p", (-0.05, -0.01), (-0.045, -0.015), "refuted"),
    ("p", (-0.01, 0.01), (-0.008, 0.008), "equivalent"),
    ("p", (-0.01, 0.06), (-0.005, 0.05), "inconclusive"),
    ("nll", (-0.05, -0.01), (-0.045, -0.015), "confirmed"),
    ("tie", (-0.01, 0.01), (-0.008, 0.008), "confirmed"),
    ("tie", (0.03, 0.08), (0.035, 0.07), "refuted"),
    ("tie", (-0.03, 0.03), (-0.025, 0.025), "inconclusive"),
    ("nll_or_tie", (-0.05, -0.01), (-0.045, -0.015), "confirmed"),
    ("nll_or_tie", (-0.01, 0.01), (-0.008, 0.008), "confirmed"),
    ("nll_or_tie", (0.03, 0.08), (0.035, 0.07), "refuted"),
    ("nll_or_tie", (-0.03, 0.03), (-0.025, 0.025), "inconclusive"),
])
def test_verdict_rule(prediction, ci95, ci90, expected):
    assert pred.verdict(prediction, ci95, ci90) == expected


def test_crossover_finds_the_root_of_a_known_line():
    p = np.linspace(0.05, 0.95, 8)
    noise = np.random.default_rng(1).normal(0, 0.002, (8, 5))
    y = (0.2 * (p - 0.4))[:, None] + noise            # crosses 0 at p = 0.4
    cr = crossover(p, y)
    assert cr["p"] == pytest.approx(0.4, abs=0.02)
    assert cr["ci"][0] < 0.4 < cr["ci"][1] and cr["frac_in_range"] == 1.0
    flat = crossover(p, np.full((8, 5), 0.05) + noise)     # never crosses inside [0, 1]
    assert flat["p"] is None and flat["ci"] is None and flat["frac_in_range"] == 0
    down = crossover(p, -y)                                # falls through 0: no upward crossing
    assert down["p"] is None


def test_crossover_is_not_pulled_by_a_floor_at_the_weak_end():
    """Δ at the floor (0) for weak positions, negative in the middle, positive at the strong end:
    the crossing lies between the last negative and the first positive position, where a
    least-squares line through all positions would put it far lower."""
    p = np.array([0.05, 0.1, 0.15, 0.33, 0.41, 0.58, 0.77, 0.9])
    mean = np.array([0, 0, 0, -6, -5, 4, 18, 20], float)
    y = mean[:, None] + np.random.default_rng(2).normal(0, 0.5, (8, 5)) * (mean != 0)[:, None]
    cr = crossover(p, y)
    # isotonic fit pools the first five positions to their mean, then rises through 0 towards 0.58
    pooled = y[:5].mean()
    expect = 0.41 + (0.58 - 0.41) * (0 - pooled) / (y[5].mean() - pooled)
    assert cr["p"] == pytest.approx(expect, abs=1e-9) and 0.41 < cr["p"] < 0.58
    assert cr["sign_changes"] == 1 and cr["ci"][0] < cr["p"] < cr["ci"][1]
    slope, icpt = np.polyfit(p, y.mean(axis=1), 1)
    assert -icpt / slope < 0.35                            # the line's root: biased low
