"""Spec grammar: round trips, fuzzing (only SpecError), the authors' keys, quantile thresholds.
Run: python -m pytest tests/theory/test_spec.py
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probsft
from probsft.errors import SpecError
from tests.strategies import ALL_SPECS, AUTHOR_KEYS, specs


@settings(max_examples=60, deadline=None)
@given(spec=specs())
def test_spec_text_spec_round_trip(spec):
    obj = probsft.objective(spec)
    again = probsft.objective(str(obj))
    assert again == obj and again.spec == obj.spec


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(
    st.text(max_size=30),
    st.text(alphabet="p0123456789.-+*/^()@<>=[],QlogexpalphaNLL ", max_size=25),
    st.sampled_from(ALL_SPECS).flatmap(lambda s: st.integers(0, len(s)).map(lambda i: s[:i] + "(" + s[i:]))))
def test_fuzzed_specs_raise_only_spec_error(text):
    try:
        obj = probsft.objective(text)
    except SpecError as err:
        assert str(err)
        return
    assert probsft.objective(obj.spec) == obj


@pytest.mark.parametrize("key, spec", sorted(AUTHOR_KEYS.items()))
def test_author_keys(key, spec):
    assert probsft.objective(key) == probsft.objective(spec)


def test_quantile_thresholds_resolve_against_supplied_probabilities():
    obj = probsft.objective("nll@p>=Q90")
    probs = np.linspace(0, 1, 101)
    resolved = obj.with_quantiles(probs)
    assert float(resolved.interval.lo) == pytest.approx(0.9)
    assert resolved.base == obj.base
    with pytest.raises(SpecError):
        obj.f(np.array([0.5]))
    low = probsft.objective("nll@p<=Q10").with_quantiles(probs)
    assert float(low.interval.hi) == pytest.approx(0.1)
    with pytest.raises(SpecError):
        obj.with_quantiles([])


@pytest.mark.parametrize("bad", ["p**2", "", "alpha()", "focal(-1)", "huber(2)", "nll@p>=2",
                                 "__import__('os')", "x+1", "nll@@p>0"])
def test_bad_specs(bad):
    with pytest.raises(SpecError):
        probsft.objective(bad)


def test_objective_module_does_not_import_the_spec_grammar():
    import ast
    import inspect

    from probsft.theory import objective

    tree = ast.parse(inspect.getsource(objective))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.endswith("spec") for m in imported)
    obj = probsft.objective("alpha(5)@p>=Q90")
    assert obj.base == probsft.objective("alpha(5)")
    assert obj.with_quantiles(np.linspace(0, 1, 11)) == probsft.objective("alpha(5)@p>=0.9")
# p = 1/2 and 1/4 are exact in binary, and exp(0 - logsumexp(0, ..., 0)) over V = 2 or 4 equal
# logits rounds to exactly 1/2 or 1/4 in float32 and float64: probabilities exactly on a bound.


@pytest.mark.parametrize("spec, on_bound, counted", [
    ("nll@p>=0.5", [0.5], [True]), ("nll@p>0.5", [0.5], [False]),
    ("p@p<=0.5", [0.5], [True]), ("p@p<0.5", [0.5], [False]),
    ("p@(0.25,0.5]", [0.25, 0.5], [False, True]), ("p@[0.25,0.5)", [0.25, 0.5], [True, False])])
def test_open_and_closed_bounds_differ_exactly_on_the_bound(spec, on_bound, counted):
    import torch

    obj = probsft.objective(spec)
    assert obj.interval.indicator(np.array(on_bound)).tolist() == counted
    assert obj.interval.indicator(torch.tensor(on_bound)).tolist() == counted
    for p, want in zip(on_bound, counted):           # through the loss: V = 1/p equal logits
        for dtype in (torch.float32, torch.float64):
            logits = torch.zeros(1, round(1 / p), dtype=dtype)
            loss = obj.loss(logits, torch.tensor([0]), reduction="sum")     # f(p) > 0 for nll, p
            assert (float(loss) > 0) == want, (p, dtype)
