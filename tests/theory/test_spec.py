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
