"""The position test on synthetic curves whose answer is known: where the best objective flips with
the probe's p, the rule that reads p beats the position-blind policies and position matters; where
one objective is best everywhere, it does not (and recommend's blind answer is that objective)."""

import math

import pytest

from probsft.continuum.position import MATTERS, blind_answer, position_test


def _cells(best_at, n=12, gain=8.0):
    """Cells of ``n`` positions spread over p in (0.05, 0.95), one noise kind: ``best_at(p)`` beats
    the others by ``gain`` points with tight CIs; the rest sit at NLL's level (Δ = 0)."""
    cells = []
    for i in range(n):
        p = 0.05 + 0.9 * i / (n - 1)
        for spec in ("p", "alpha(0.1)"):
            d = gain if best_at(p) == spec else (-gain if spec == "p" else 0.0)
            if best_at(p) == "nll":
                d = -gain
            cells.append({"position": f"t{i}", "probe_answer_p": p, "supervision": "token",
                          "optimizer": "adamw", "objective": spec, "delta": d,
                          "ci_low": d - 1.0, "ci_high": d + 1.0, "verdict": ""})
    return cells


def test_position_matters_where_the_best_objective_flips_along_p():
    t = position_test(_cells(lambda p: "alpha(0.1)" if p < 0.5 else "p"))
    assert t["matters"] and t["delta"] >= MATTERS and t["ci"][0] > 0
    assert t["hit_rates"]["rule"]["informative"] > t["hit_rates"]["lookup"]["informative"]
    assert t["informative_cells"] == t["cells"] == 12


def test_position_does_not_matter_where_one_objective_is_best_everywhere():
    cells = _cells(lambda p: "alpha(0.1)")
    t = position_test(cells)
    assert not t["matters"] and t["delta"] == pytest.approx(0.0)
    assert t["constant"] == "alpha(0.1)"
    assert blind_answer(t, cells, "token", "adamw") == "alpha(0.1)"


def test_cells_where_every_objective_is_a_hit_say_nothing():
    cells = [dict(c, delta=0.0, ci_low=-1.0, ci_high=1.0) for c in _cells(lambda p: "p")]
    t = position_test(cells)
    assert t["informative_cells"] == 0 and math.isnan(t["delta"]) and not t["matters"]
