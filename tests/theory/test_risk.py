"""First-order risk-reduction rate (Cor. E.6, paper notes §2.4) against brute force.

Brute force: take a tiny gradient step of f(p_ỹ) on the logits z = log q and measure the change of
the population risk R = -q_{y*}; the rate must match q_{y*} s_f(q_ỹ) <e_{y*} - q, e_ỹ - q>.
Run: python -m pytest tests/theory/test_risk.py
"""

import math

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from probsft.theory.risk import (
    clean_and_noisy_rates,
    expected_risk_rate,
    noise_crossing,
    noise_threshold,
    risk_rate,
    uniform_prior_threshold,
)

import probsft
from probsft.errors import UserError
from tests.strategies import simplex


def brute_force_rate(obj, q, y_star, y_label, eta=1e-7):
    """-(dR/dt) by central finite differences of gradient flow on the logits (float64)."""
    z = torch.tensor(np.log(q), dtype=torch.float64, requires_grad=True)     # [C, V]
    labels = torch.tensor(y_label)
    obj.loss(z, labels, reduction="sum").backward()
    idx = torch.tensor(y_star)[:, None]
    up = torch.softmax(z.detach() - eta * z.grad, -1).gather(-1, idx)[:, 0]
    down = torch.softmax(z.detach() + eta * z.grad, -1).gather(-1, idx)[:, 0]
    return ((up - down) / (2 * eta)).numpy()


@settings(max_examples=60, deadline=None)
@given(data=simplex(), spec=__import__("hypothesis").strategies.sampled_from(
    ["nll", "p", "alpha(0.5)", "alpha(5)", "log(1-p)", "focal(2)", "dft", "nll@p>=0.2"]))
def test_rate_matches_a_gradient_step(data, spec):
    q, y_star, y_label = data
    obj = probsft.objective(spec)
    got = risk_rate(obj, q, y_star, y_label)
    np.testing.assert_allclose(got, brute_force_rate(obj, q, y_star, y_label), rtol=1e-5, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(data=simplex())
def test_expected_rate_is_the_label_average(data):
    q, y_star, _ = data
    C, V = q.shape
    obj = probsft.objective("alpha(0.5)")
    rng = np.random.default_rng(0)
    weights = rng.random((C, V))
    for E in (0.0, 0.3, 1.0):
        for w in (None, weights):
            got = expected_risk_rate(obj, q, y_star, E, noisy_label_probs=w)
            want = np.zeros(C)
            for c in range(C):
                ww = np.ones(V) if w is None else w[c].copy()
                ww[y_star[c]] = 0
                ww /= ww.sum()
                for j in range(V):
                    prob = (1 - E) * (j == y_star[c]) + E * ww[j]
                    want[c] += prob * risk_rate(obj, q[c:c + 1], y_star[c:c + 1], np.array([j]))[0]
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_notes_numerical_check_uniform_prior():
    # paper notes §2.4 caveats: V = 1000 uniform: Ṙ(-p) - Ṙ(NLL) < 0 for E <= 0.99, > 0 at 0.9995
    nll, minus_p = probsft.objective("nll"), probsft.objective("p")
    q, y = np.full((1, 1000), 1e-3), np.array([0])
    gap = lambda E: float((expected_risk_rate(minus_p, q, y, E) - expected_risk_rate(nll, q, y, E))[0])
    assert all(gap(E) < 0 for E in (0.0, 0.5, 0.9, 0.99))
    assert gap(0.9995) > 0
    assert noise_threshold(nll, minus_p, q, y) == pytest.approx(999 / 1000, rel=1e-9)


def _two_token_prior(V, q_star, q_label):
    q = np.full((1, V), (1 - q_star - q_label) / (V - 2))
    q[0, 0], q[0, 1] = q_star, q_label
    w = np.zeros((1, V))
    w[0, 1] = 1.0                                        # the wrong label is always token 1
    return q, w


@pytest.mark.parametrize("q_star, q_label, below, above", [(0.75, 0.05, 0.0, 0.1), (0.4, 0.4, 0.5, 0.55)])
def test_notes_numerical_check_strong_prior(q_star, q_label, below, above):
    # notes §2.4: with 0.8 of the mass on {y*, ỹ}, Ṙ(-p) - Ṙ(NLL) < 0 at E = 0 and > 0 at E = 0.1.
    # That holds for the split q = (0.75, 0.05); for (0.4, 0.4) the crossing is at E* ≈ 0.52.
    q, w = _two_token_prior(1000, q_star, q_label)
    nll, minus_p = probsft.objective("nll"), probsft.objective("p")
    gap = lambda E: float((expected_risk_rate(minus_p, q, np.array([0]), E, w)
                           - expected_risk_rate(nll, q, np.array([0]), E, w))[0])
    assert gap(below) < 0 < gap(above)
    c = noise_crossing(nll, minus_p, q, np.array([0]), w)
    assert below < c.e_star < above and c.winner_below == "nll" and c.winner_above == "p"
    assert gap(c.e_star) == pytest.approx(0.0, abs=1e-12)


def test_crossing_meanings():
    q = np.full((2, 4), 0.25)
    y = np.array([0, 1])
    same = noise_crossing(probsft.objective("p"), probsft.objective("dft"), q, y)
    assert math.isnan(same.e_star) and "equally" in same.statement()
    # uniform prior, V = 4: clean inner product 3/4, noisy -1/4 -> E* = 3/4 for any pair
    c = noise_crossing(probsft.objective("nll"), probsft.objective("alpha(5)"), q, y)
    assert float(c) == pytest.approx(3 / 4) and (c.winner_below, c.winner_above) == ("nll", "alpha(5)")
    # both y* and the wrong label unlikely, a third token likely: the noisy inner product
    # ||q||² - q_y* - q_ỹ > 0 as well, so the larger weight (NLL) wins at every E: inf
    q2, w = np.array([[0.01, 0.01, 0.98]]), np.array([[0.0, 1.0, 0.0]])
    c2 = noise_crossing(probsft.objective("nll"), probsft.objective("p"), q2, np.array([0]), w)
    assert math.isinf(c2.e_star) and c2.winner_below == "nll" and "every" in c2.statement()
    with pytest.raises(UserError):
        expected_risk_rate(probsft.objective("p"), q, y, 1.5)


def test_uniform_prior_threshold_symbolic():
    d = uniform_prior_threshold()
    V, E = d["V"], d["E"]
    assert sympy.simplify(d["e_star"] - (V - 1) / V) == 0
    # the symbolic rate agrees with the numeric one for f = 1 - p (f' = -1) and f = -log p
    x = sympy.Symbol("x", positive=True)
    f1 = sympy.Function("f_1")
    for spec, fx in (("p", 1 - x), ("nll", -sympy.log(x)), ("alpha(1/2)", 2 - 2 * sympy.sqrt(x))):
        rate = d["rate"].replace(f1, sympy.Lambda(x, fx)).doit()
        for Vn, En in ((10, 0.3), (1000, 0.9995)):
            q = np.full((1, Vn), 1 / Vn)
            want = float(expected_risk_rate(probsft.objective(spec), q, np.array([0]), En)[0])
            assert float(rate.subs({V: Vn, E: En})) == pytest.approx(want, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(data=simplex(max_contexts=4, max_v=6, concentration=0.5))
def test_deft_rate_is_the_alpha_rate_at_each_priors_sum_q2(data):
    """At t = 0 DEFT weighs label j by s = q_j^a with a = sum_j q_j^2 of the context's prior, i.e. it
    is alpha(a) context by context (Cor. E.6): Ṙ = q_{y*} q_ỹ^a <e_{y*} - q, e_ỹ - q>."""
    q, y_star, y_label = data
    deft = probsft.objective("deft")
    a = np.sum(q ** 2, -1)                                                 # [C]
    rows = np.arange(q.shape[0])
    inner = lambda j: (j == y_star) - q[rows, y_star] - q[rows, j] + np.sum(q * q, -1)
    want = q[rows, y_star] * q[rows, y_label] ** a * inner(y_label)
    np.testing.assert_allclose(risk_rate(deft, q, y_star, y_label), want, rtol=1e-9, atol=1e-15)
    clean, noisy = clean_and_noisy_rates(deft, q, y_star)
    V = q.shape[1]
    others = [np.mean([q[c, y_star[c]] * q[c, j] ** a[c] * inner(np.full_like(y_star, j))[c]
                       for j in range(V) if j != y_star[c]]) for c in rows]
    np.testing.assert_allclose(clean, q[rows, y_star] * q[rows, y_star] ** a * inner(y_star),
                               rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(noisy, others, rtol=1e-9, atol=1e-15)
