"""The prediction table is pinned, stated once, and placement is by answer tokens."""

import inspect

import pytest

from probsft.continuum import predictions as pred


def test_prediction_table_is_pinned():
    expected = {}
    for s in pred.SUPERVISION:
        expected[("model-weak", s)] = "nll"
        expected[("model-intermediate", s)] = "tie"
        expected[("model-strong", s)] = "nll_or_tie" if s == "clean" else "p"
    assert pred.PREDICTIONS == expected
    assert pred.SUPERVISION == ("clean", "token", "answer", "plausible")
    assert pred.predict("model-strong", "clean") == "nll_or_tie"
    assert pred.predict("model-strong", "token") == "p"


def test_regions_and_borders():
    assert [(r.name, r.lo) for r in pred.REGIONS] == [
        ("model-weak", 0.0), ("model-intermediate", 0.25), ("model-strong", 0.65)]
    assert pred.BORDERS == (0.25, 0.65)
    assert all(a.hi == b.lo for a, b in zip(pred.REGIONS, pred.REGIONS[1:]))
    for p, name in ((0.0, "model-weak"), (0.2499, "model-weak"), (0.25, "model-intermediate"),
                    (0.6499, "model-intermediate"), (0.65, "model-strong"), (1.0, "model-strong")):
        assert pred.region_of(p).name == name
    assert pred.TIE_MARGIN == 0.02 and pred.PAPER_CROSSOVER == 0.5


def test_placement_is_by_answer_tokens():
    assert pred.PLACEMENT == "answer"


def test_equivalence_bounds_are_open():
    assert pred.is_equivalent((-0.0199, 0.0199))
    assert not pred.is_equivalent((-0.02, 0.01)) and not pred.is_equivalent((-0.01, 0.02))


@pytest.mark.parametrize("module", ["probsft.figures.continuum", "probsft.continuum.experiment",
                                    "probsft.validate.probe"])
def test_predictions_are_stated_once(module):
    import importlib

    src = inspect.getsource(importlib.import_module(module))
    for literal in ("0.25", "0.65", '"nll_or_tie"', "tol ="):
        assert literal not in src, f"{module} restates {literal}"
