"""The one verdict rule (probsft.verdicts): its table, and the simulator's, the continuum cells' and
the adaptive objectives' verdicts all come from it (checked against the rules they had before)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probsft.continuum.analysis import STATUS
from probsft.continuum.predictions import verdict as cell_verdict
from probsft.sim.verdicts import outcome
from probsft.verdicts import PREDICTIONS, VERDICTS, is_equivalent, verdict


@pytest.mark.parametrize("prediction, ci, eq, want", [
    ("positive", (0.1, 0.3), None, "confirmed"),
    ("positive", (-0.3, -0.1), None, "refuted"),
    ("positive", (-0.005, 0.005), None, "equivalent"),
    ("positive", (-0.1, 0.1), None, "inconclusive"),
    ("negative", (-0.3, -0.1), None, "confirmed"),
    ("tie", (-0.005, 0.005), None, "confirmed"),
    ("tie", (0.001, 0.005), None, "confirmed"),      # a sign, but equivalent: the tie holds
    ("tie", (0.001, 0.5), None, "refuted"),
    ("tie", (-0.1, 0.1), None, "inconclusive"),      # no difference found is not a tie
    ("not_positive", (-0.3, -0.1), None, "confirmed"),
    ("not_positive", (0.001, 0.005), None, "confirmed"),
    ("not_positive", (0.1, 0.3), None, "refuted"),
    ("not_worse", (-0.1, 0.3), (-0.005, 0.2), "confirmed"),
    ("not_worse", (-0.3, -0.1), None, "refuted"),
    ("not_worse", (-0.3, 0.1), None, "inconclusive"),
    ("positive", (math.nan, 0.1), None, "inconclusive"),
])
def test_the_table(prediction, ci, eq, want):
    assert verdict(prediction, ci, eq, margin=0.01) == want


def test_bounds_are_open_and_bad_predictions_refused():
    assert is_equivalent((-0.0199, 0.0199), 0.02) and not is_equivalent((-0.02, 0.01), 0.02)
    assert not is_equivalent((-0.01, 0.02), 0.02)
    with pytest.raises(ValueError, match="unknown prediction"):
        verdict("p", (0, 1))


def _old_sim_outcome(lo, hi, margin, at_least):            # sim/verdicts.py before the move
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if lo > (-margin if at_least else 0):
        return "confirmed"
    if hi < 0:
        return "refuted"
    if -margin < lo and hi < margin:
        return "equivalent"
    return "inconclusive"


def _old_cell_verdict(prediction, ci95, ci90, margin):     # validate/predictions.py before
    lo, hi = ci95
    sign = "p" if lo > 0 else "nll" if hi < 0 else None
    equiv = -margin < ci90[0] and ci90[1] < margin
    if prediction in ("p", "nll"):
        if sign is not None:
            return "confirmed" if sign == prediction else "refuted"
        return "equivalent" if equiv else "inconclusive"
    if prediction == "tie":
        return "confirmed" if equiv else "refuted" if sign is not None else "inconclusive"
    if sign == "nll" or equiv:
        return "confirmed"
    return "refuted" if sign == "p" else "inconclusive"


interval = st.tuples(st.floats(-0.2, 0.2), st.floats(0, 0.2)).map(lambda t: (t[0], t[0] + t[1]))


@given(ci=interval, shrink=st.floats(0, 1), margin=st.sampled_from([0.0, 0.01, 0.02]),
       at_least=st.booleans())
def test_the_simulator_and_the_cells_keep_their_verdicts(ci, shrink, margin, at_least):
    assert outcome(*ci, margin=margin, at_least=at_least) == _old_sim_outcome(*ci, margin, at_least)
    mid = (ci[0] + ci[1]) / 2
    ci90 = (mid - shrink * (mid - ci[0]), mid + shrink * (ci[1] - mid))
    for prediction in ("p", "nll", "tie", "nll_or_tie"):
        assert cell_verdict(prediction, ci, ci90, margin) == _old_cell_verdict(prediction, ci, ci90,
                                                                               margin)
    old_status = ("not worse" if ci90[0] > -margin else "worse" if ci[1] < 0 else "inconclusive")
    assert STATUS[verdict("not_worse", ci, ci90, margin)] == old_status
    assert set(STATUS) <= set(VERDICTS) and len(PREDICTIONS) == 5
