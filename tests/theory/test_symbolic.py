"""Symbolic derivations: s_f, W_f >= 0, the peak of W_f (Prop. 3.2), class (Def. 3.3), special cases.
Run: python -m pytest tests/theory/test_symbolic.py
"""

import json

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from probsft.theory.expr import p
from probsft.theory.symbolic import alpha_family, derive, markdown_table

import probsft
from tests.strategies import ALL_SPECS, probabilities

GRID = np.linspace(1e-6, 1 - 1e-6, 2001)


@pytest.fixture(scope="module")
def derivations():
    return {spec: derive(spec) for spec in ALL_SPECS}


@settings(max_examples=200, deadline=None)
@given(spec=st.sampled_from(ALL_SPECS), prob=probabilities)
def test_s_and_W_nonnegative(spec, prob):
    obj = probsft.objective(spec)
    assert obj.s(np.array([prob]))[0] >= 0 and obj.W(np.array([prob]))[0] >= 0


def test_peak_is_the_numeric_argmax_and_obeys_prop_3_2(derivations):
    for spec, d in derivations.items():
        obj = probsft.objective(spec)
        w = obj.W(GRID)
        near = np.clip(d.peak + np.array([-1e-9, 0.0, 1e-9]), 1e-12, 1 - 1e-12)  # open I: sup
        assert obj.W(near).max() >= w.max() - 1e-6 * max(1, w.max()) or \
            d.peak_kind in ("p->0", "p->1"), spec
        if d.convexity == "convex":
            assert d.peak <= 0.5 + 1e-6, spec
        elif d.convexity == "concave":
            assert d.peak >= 0.5 - 1e-6, spec
        if d.interval is None and d.convexity in ("convex", "concave", "linear"):
            assert d.prop32_consistent, spec
        json.dumps(d.to_dict(), allow_nan=False)


@pytest.mark.parametrize("a", ["0.1", "1/2", "0.8", "2", "5", "10", "1/3"])
def test_alpha_peak_closed_form(a):
    d = derive(f"alpha({a})")
    A = sympy.Rational(a)
    assert d.peak_exact is not None and sympy.Rational(d.peak_exact) == A / (1 + A)
    assert d.convexity == ("convex" if A < 1 else "concave")
    assert d.class_tau == ("prior-averse" if A < 1 else "prior-leaning")
    assert d.klass == ("prior-averse" if A < 1 else "prior-leaning")     # the peak A/(1+A) vs 1/2
    assert d.class_vs_nll == "prior-leaning"         # any α > 0 leans further than NLL (α -> 0)
    assert d.w_mean_p == pytest.approx(float((A + 1) / (A + 3)), abs=1e-9)   # closed form


def test_alpha_family_symbolic():
    fam = alpha_family()
    a = fam["alpha"]
    assert sympy.simplify(fam["peak"] - a / (1 + a)) == 0
    assert sympy.simplify(fam["W_f"] - p ** a * (1 - p)) == 0
    assert sympy.simplify(fam["f_second"] - (1 - a) * p ** (a - 2)) == 0


def test_analytic_special_cases(derivations):
    W = lambda spec, x: float(probsft.objective(spec).W(np.array([x]))[0])
    assert W("p", 0.5) == pytest.approx(0.25)
    assert W("dft", 0.5) == pytest.approx(0.25)
    for x in (0.1, 0.5, 0.9):
        assert W("nll", x) == pytest.approx(1 - x)
        assert W("log(1-p)", x) == pytest.approx(x)
        assert W("alpha(0.5)", x) == pytest.approx(np.sqrt(x) * (1 - x))
        g = 2.0   # focal, paper table: (1-p)^γ[(1-p) - γ p log p]
        assert W("focal(2)", x) == pytest.approx((1 - x) ** g * ((1 - x) - g * x * np.log(x)))
        d = 0.5   # Huber on e = 1-p: p(1-p)^2 if 1-p <= δ, δ p(1-p) otherwise
        assert W("huber(0.5)", x) == pytest.approx(x * (1 - x) ** 2 if 1 - x <= d else d * x * (1 - x))
        assert W("nll@p>=0.2", x) == pytest.approx((1 - x) * (x >= 0.2))
    assert derivations["alpha(0.5)"].peak == pytest.approx(1 / 3)
    assert derivations["alpha(0.5)"].peak_exact == "1/3"
    assert derivations["nll"].peak_kind == "p->0" and derivations["nll"].klass == "prior-averse"
    assert derivations["nll"].class_vs_nll == "neither"                  # its own reference
    assert derivations["nll"].class_tau == "prior-averse"
    assert derivations["nll"].mass_above_tau == pytest.approx(0.25, abs=1e-9)
    assert derivations["nll"].w_mean_p == pytest.approx(1 / 3, abs=1e-12)
    assert derivations["log(1-p)"].peak_kind == "p->1"
    assert derivations["log(1-p)"].klass == "prior-leaning"
    assert derivations["log(1-p)"].mass_above_tau == pytest.approx(0.75, abs=1e-9)
    assert derivations["p"].class_tau == "neither" and derivations["p"].convexity == "linear"
    assert derivations["focal(2)"].klass == "prior-averse"
    assert derivations["nll@p>=0.2"].peak == pytest.approx(0.2)


def test_non_integrable_weights_and_tau():
    d = derive("alpha(-2)")                 # W = (1-p)/p², not integrable at 0
    assert d.peak_kind == "p->0" and d.klass == "prior-averse" and d.mass_above_tau == 0.0
    d = derive("expr:-1/(1-p)")             # s = p/(1-p)², W = p/(1-p), not integrable at 1
    assert d.peak_kind == "p->1" and d.klass == "prior-leaning" and d.mass_above_tau == 1.0
    assert derive("p", tau=0.3).class_tau == "prior-leaning"
    assert derive("p", tau=0.7).class_tau == "prior-averse"


def test_def33_relative_to_nll_as_the_paper_uses_it():
    """The paper calls −p and NLL·1{p≥0.2} prior-leaning: more W mass towards p -> 1 than NLL."""
    assert derive("p").class_vs_nll == "prior-leaning" and derive("p").w_mean_p == pytest.approx(0.5)
    d = derive("nll@p>=0.2")
    assert d.class_vs_nll == "prior-leaning"
    # exact piecewise integrals at the threshold's jump: int_.2^1 p(1-p) / int_.2^1 (1-p)
    assert d.w_mean_p == pytest.approx((1 / 6 - (0.02 - 0.008 / 3)) / 0.32, abs=1e-12)
    assert d.mass_above_tau == pytest.approx(0.125 / 0.32, abs=1e-12)        # 0.390625
    assert derive("nll@p<=0.5").class_vs_nll == "prior-averse"


def test_def33_under_a_distribution_of_target_p():
    from probsft.theory.symbolic import prior_class

    target = np.array([0.01, 0.02, 0.05, 0.9])
    cls, m, ref = prior_class("p", target)
    w_nll = 1 - target
    assert ref == pytest.approx(np.sum(target * w_nll) / np.sum(w_nll))
    assert m == pytest.approx(np.sum(target * target * (1 - target)) / np.sum(target * (1 - target)))
    assert cls == "prior-leaning"
    assert prior_class("nll@p<=0.5", target)[0] == "prior-averse"


def test_time_limit_on_a_hard_expression():
    """With no time for sympy (time_limit=0; timings belong in benchmarks, not here) derive falls
    back to the numeric grid and still gets the shape right: f'' changes sign on (0, 1) (finite
    differences), so f is neither convex nor concave, and the peak is the argmax of W_f."""
    spec = "expr:-p - exp(-1/p)*sin(p)/7 - atan(p**3)/5"
    d = derive(spec, time_limit=0)
    assert d.convexity_by == "numeric" and d.peak_exact is None
    obj = probsft.objective(spec)
    x, h = np.linspace(0.01, 0.99, 99), 1e-4
    f2 = (obj.f(x + h) - 2 * obj.f(x) + obj.f(x - h)) / h ** 2
    assert f2.max() > 0.1 and f2.min() < -0.1
    assert d.convexity == "neither" and d.prop32_consistent is None
    with np.errstate(all="ignore"):            # exp(-1/p) underflows: W is NaN at p ~ 1e-6
        assert d.peak == pytest.approx(GRID[np.nanargmax(obj.W(GRID))], abs=1e-3)
    assert d.peak_kind == "interior" and 0.5 < d.peak < 0.65


def test_markdown_table():
    lines = markdown_table([derive("nll"), derive("alpha(0.5)")])
    assert len(lines) == 4 and "1/3" in lines[3] and "p→0" in lines[2]
