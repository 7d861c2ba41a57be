"""Losses of every objective against a plain-torch autograd reference (float64), plus robustness.

Lemma 3.1: d f(p_y)/dz = s_f(p)(q - e_y); the closed-form backward in probsft.theory.losses must
equal autograd through a reference f written with ordinary torch ops below.
Run: python -m pytest tests/theory/test_losses.py
"""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from probsft.theory.spec import registered

import probsft
from probsft.errors import NonFiniteLogitsError
from probsft.theory.losses import counted_tokens
from probsft.theory.statistics import token_stats_torch
from tests.strategies import LOSS_SPECS, batches, loss_specs


def _param(spec):
    m = re.fullmatch(r"[a-z]+\(([-+0-9.e]+)(?:/([0-9]+))?\)", spec)
    return float(m.group(1)) / float(m.group(2) or 1) if m else None


# f(p) with ordinary torch ops: (family or expr spec) -> (param, p, log p) -> f
REFERENCE = {
    "nll": lambda a, p, lp, q2: -lp,
    "p": lambda a, p, lp, q2: 1 - p,
    "alpha": lambda a, p, lp, q2: (1 - p ** a) / a,
    "log1mp": lambda a, p, lp, q2: torch.log(-torch.expm1(lp)),  # exact as p -> 1, unlike log1p(-p)
    "dft": lambda a, p, lp, q2: -p.detach() * lp,
    "deft": lambda a, p, lp, q2: (1 - p ** q2) / q2,       # q2 = sum_j q_j^2, detached
    "focal": lambda a, p, lp, q2: -(1 - p) ** a * lp,
    "huber": lambda a, p, lp, q2: torch.where(1 - p <= a, (1 - p) ** 2 / 2, a * ((1 - p) - a / 2)),
    "expr:1/3 - p**3/3": lambda a, p, lp, q2: (1 - p ** 3) / 3,
    "expr:-p - log(p) + 1": lambda a, p, lp, q2: -lp + (1 - p),
    "expr:exp(-p)": lambda a, p, lp, q2: torch.exp(-p),
    "expr:-sqrt(p)": lambda a, p, lp, q2: -torch.sqrt(p),
    "expr:(1 - p)**2": lambda a, p, lp, q2: (1 - p) ** 2,
}


def reference_loss(obj, logits, labels, reduction="mean", ignore_index=-100):
    base = obj.base
    key = base.spec if base.family == "expr" else base.family
    valid = labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    logq = torch.log_softmax(logits, -1)
    lp = logq.gather(-1, safe[..., None])[..., 0]
    p = lp.exp()
    q2 = (logq.exp() ** 2).sum(-1).detach()
    f = REFERENCE[key](_param(base.spec), p, lp, q2)
    counted = valid
    if obj.interval is not None:
        counted = counted & torch.as_tensor(obj.interval.indicator(p.detach().numpy()))
    per = torch.where(counted, f, torch.zeros_like(f))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / max(int(counted.sum()), 1)


def _grad(fn, logits):
    z = logits.clone().requires_grad_()
    out = fn(z)
    (out if out.dim() == 0 else out.sum()).backward()
    return out.detach(), z.grad


def test_reference_covers_every_spec():
    for spec in LOSS_SPECS:
        obj = probsft.objective(spec).base
        assert (obj.spec if obj.family == "expr" else obj.family) in REFERENCE, spec


@settings(max_examples=120, deadline=None)
@given(spec=loss_specs(), batch=batches(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_closed_form_gradient_equals_autograd(spec, batch, reduction):
    obj = probsft.objective(spec)
    logits, labels = batch
    v1, g1 = _grad(lambda z: obj.loss(z, labels, reduction=reduction), logits)
    v2, g2 = _grad(lambda z: reference_loss(obj, z, labels, reduction), logits)
    # log p = z_y - logsumexp(z) carries an absolute rounding error of a few eps (|z|max + 1), which
    # f passes on times |df/dlog p| = s_f(p): large where f is ill-conditioned (log(1-p) at p -> 1).
    logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    stats = token_stats_torch(obj.token_stats, logits, torch.logsumexp(logits, -1))   # deft: sum q^2
    s = obj.base.s_of_logp(logp, stats).abs().where(labels != -100, torch.zeros(()))
    spread = 8 * torch.finfo(torch.float64).eps * (float(logits.abs().max()) + 1) * s
    atol = 1e-10 + float(spread.max() if reduction == "none" else
                         spread.sum() / (1 if reduction == "sum" else max(int((labels != -100).sum()), 1)))
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=atol)
    # the gradient s(q - e_y) inherits the same error: ds/dlog p ~ s^2 for log(1-p) while
    # |q - e_y| ~ 1 - p ~ 1/s, so a token's gradient is off by up to its value's spread
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=max(1e-9, atol))


@settings(max_examples=30, deadline=None)
@given(batch=batches(mask=False))
def test_alpha_to_zero_is_nll(batch):
    logits, labels = batch
    nll = probsft.objective("nll")
    for eps in (1e-6, -1e-6):
        a = probsft.objective(f"alpha({eps})")
        v1, g1 = _grad(lambda z, a=a: a.loss(z, labels), logits)
        v2, g2 = _grad(lambda z: nll.loss(z, labels), logits)
        torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(batch=batches())
def test_dft_gradient_equals_minus_p(batch):
    logits, labels = batch
    _, g1 = _grad(lambda z: probsft.objective("dft").loss(z, labels, reduction="sum"), logits)
    _, g2 = _grad(lambda z: probsft.objective("p").loss(z, labels, reduction="sum"), logits)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(spec=st.sampled_from(["nll@p>=0.2", "p@p<=0.3", "alpha(5)@0.1<=p<=0.9", "focal(2)@p>0.3"]),
       batch=batches(scale=3.0))
def test_threshold_gradient_is_base_gradient_times_indicator(spec, batch):
    logits, labels = batch
    obj = probsft.objective(spec)
    _, g = _grad(lambda z: obj.loss(z, labels, reduction="none"), logits)
    _, g_base = _grad(lambda z: obj.base.loss(z, labels, reduction="none"), logits)
    valid = labels != -100
    p = torch.softmax(logits, -1).gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    ind = torch.as_tensor(obj.interval.indicator(p.numpy())) & valid
    torch.testing.assert_close(g, g_base * ind[:, None], rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(spec=loss_specs(), batch=batches(), shift=st.floats(-50, 50))
def test_ignore_index_mask_and_shift_invariance(spec, batch, shift):
    obj = probsft.objective(spec)
    logits, labels = batch
    noisy = logits.clone()
    noisy[labels == -100] = torch.randn_like(noisy[labels == -100]) * 10
    v, g = _grad(lambda z: obj.loss(z, labels), logits)
    v_noisy, _ = _grad(lambda z: obj.loss(z, labels), noisy)
    torch.testing.assert_close(v, v_noisy)
    assert torch.all(g[labels == -100] == 0)
    torch.testing.assert_close(obj.loss(logits + shift, labels), v, rtol=1e-7, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(spec=loss_specs(), batch=batches(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_numpy_equals_torch(spec, batch, reduction):
    obj = probsft.objective(spec)
    logits, labels = batch
    got = np.asarray(obj.loss_numpy(logits.numpy(), labels.numpy(), reduction=reduction))
    np.testing.assert_allclose(got, obj.loss(logits, labels, reduction=reduction).numpy(),
                               rtol=1e-9, atol=1e-12)


def test_reductions():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 7, (2, 5), generator=gen)
    labels[0, :2] = -100
    obj = probsft.objective("alpha(0.5)")
    per = obj.loss(logits, labels, reduction="none")
    assert per.shape == labels.shape and torch.all(per[0, :2] == 0)
    torch.testing.assert_close(obj.loss(logits, labels, reduction="sum"), per.sum())
    torch.testing.assert_close(obj.loss(logits, labels), per.sum() / 8)
    torch.testing.assert_close(obj.loss(logits, labels, num_items_in_batch=20), per.sum() / 20)


@pytest.mark.parametrize("spec", registered() + ["deft"])
def test_extreme_logits_finite(spec):
    # p -> 0 and p -> 1 with logits of +-1e4
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    v, g = _grad(lambda z: probsft.objective(spec).loss(z, labels), logits)
    assert torch.isfinite(v) and torch.all(torch.isfinite(g))


def test_large_vocab_all_masked_nonfinite_and_bf16():
    obj = probsft.objective("p")
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 150_000, generator=gen)
    labels = torch.tensor([5, 149_999, -100])
    v, g = _grad(lambda z: obj.loss(z, labels), logits)
    assert torch.isfinite(v) and torch.all(torch.isfinite(g))
    ref = reference_loss(obj, logits.double(), labels)
    assert math.isclose(float(v), float(ref), rel_tol=1e-5)
    # all masked: loss 0, zero gradient, no NaN
    v0, g0 = _grad(lambda z: obj.loss(z, torch.full((3,), -100)), logits[:, :10])
    assert float(v0) == 0.0 and torch.all(g0 == 0)
    bad = logits[:, :10].clone()
    bad[1, 3] = float("nan")
    with pytest.raises(NonFiniteLogitsError):
        obj.loss(bad, labels.clamp(max=9))
    # bf16 logits: log p computed in float32
    small = logits[:, :50].to(torch.bfloat16)
    got = obj.loss(small, labels.clamp(max=49))
    want = reference_loss(obj, small.float().double(), labels.clamp(max=49))
    assert math.isclose(float(got), float(want), rel_tol=1e-5)


def test_objective_overflow_is_a_clear_error_not_a_nan():
    # f = 1/p is valid on (0, 1), but s_f = 1/p overflows float32 at p = e^-100
    obj = probsft.objective("1/p")
    with pytest.raises(probsft.UserError, match="non-finite f"):
        obj.loss(torch.tensor([[-100.0, 0.0]]), torch.tensor([0]))
    assert torch.isfinite(obj.loss(torch.tensor([[-1.0, 0.0]]), torch.tensor([0])))


@pytest.mark.parametrize("n", [0, -3, float("inf"), torch.tensor(0.0)])
def test_a_non_positive_token_count_is_an_error_not_a_nan(n):
    obj = probsft.objective("nll")
    logits, labels = torch.randn(3, 5, dtype=torch.float64), torch.tensor([0, 1, 2])
    for loss in (obj.loss, obj.loss_numpy):
        with pytest.raises(probsft.UserError, match="num_items_in_batch must be a token count > 0"):
            loss(logits.numpy() if loss == obj.loss_numpy else logits, labels.numpy()
                 if loss == obj.loss_numpy else labels, reduction="sum", num_items_in_batch=n)
    got = obj.loss(logits, labels, reduction="sum", num_items_in_batch=torch.tensor(6))
    assert float(got) == pytest.approx(float(obj.loss(logits, labels, reduction="sum")) / 6)


def test_a_target_of_probability_zero_says_so_not_rewrite_f():
    logits = torch.tensor([[-math.inf, 0.0, 1.0], [0.0, 1.0, 2.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    with pytest.raises(probsft.UserError, match="target token has probability 0") as info:
        probsft.objective("nll").loss(logits, labels)
    assert "rewrite" not in str(info.value)
    # where f(0) is finite (-p) the token simply gives no gradient
    loss = probsft.objective("p").loss(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(logits.grad[0] == 0)
    # masked, it is fine under NLL too
    assert torch.isfinite(probsft.objective("nll").loss(logits, torch.tensor([-100, 2])))


def test_deferred_checks_collect_without_raising_then_raise_on_read():
    """Inside deferred_checks the loss's checks (non-finite logits, bad labels) do not sync or raise;
    the pending flag is false and raise_failed raises the same error as the immediate check."""
    import probsft
    from probsft.theory.losses import deferred_checks

    obj = probsft.objective("nll")
    logits = torch.zeros(3, 4)
    logits[1, 2] = float("nan")
    with deferred_checks() as checks:
        obj.loss(logits, torch.tensor([0, 1, 2]))
        obj.loss(torch.zeros(2, 4), torch.tensor([0, 9]))             # label out of range
    assert len(checks.items) >= 2 and not bool(checks.flag())
    with pytest.raises(probsft.NonFiniteLogitsError):
        checks.raise_failed()
    with deferred_checks() as fine:
        obj.loss(torch.zeros(2, 4), torch.tensor([0, 3]))
    assert bool(fine.flag())
    with pytest.raises(probsft.UserError, match="labels must be in"):
        obj.loss(torch.zeros(2, 4), torch.tensor([0, 9]))             # immediate outside
# Target probabilities from 1e-30 to 1 - 1e-4 (0.4, not 0.5 or 0.2: no point on a threshold).
EXTREME_P = [1e-30, 1e-12, 1e-6, 1e-3, 0.05, 0.4, 0.9, 0.99, 1 - 1e-4]


def extreme_logits(V=8, seed=0):
    """Logits [len(EXTREME_P), V] (float64) whose softmax puts EXTREME_P on label 0, labels [N]."""
    gen = torch.Generator().manual_seed(seed)
    P = torch.tensor(EXTREME_P, dtype=torch.float64)
    z = torch.randn(len(P), V, generator=gen, dtype=torch.float64)
    z[:, 0] = torch.log(P) - torch.log1p(-P) + torch.logsumexp(z[:, 1:], -1)
    return z, torch.zeros(len(P), dtype=torch.long)


def low_precision_tolerances(obj, z, ref, grad_ref, out_dtype):
    """Error bounds of the float32 computation (bf16 logits are upcast first) against float64 on
    the same logits, per token [N] for f and per logit [N, V] for the gradient s_f (q - e_y).

    log p = z_y - logsumexp(z) in float32 is off by at most a few eps32 (|z|max + 1) =: delta; f moves
    by |df/dlog p| delta = s_f delta, s_f by |ds_f/dlog p| delta, q by q delta; each value is rounded
    once more (eps32), a bf16 gradient once to bf16 (eps_bf16 |g|); float32's smallest normal
    number is the floor (p^10 at p = 1e-30 underflows). Constants carry a 4x safety factor."""
    eps, tiny = torch.finfo(torch.float32).eps, torch.finfo(torch.float32).tiny
    with torch.no_grad():
        logp = torch.log_softmax(z, -1)[:, 0]
        q = torch.softmax(z, -1)
        e_y = torch.nn.functional.one_hot(torch.zeros_like(logp, dtype=torch.long), z.shape[-1])
        counted = torch.ones_like(logp, dtype=torch.bool) if obj.interval is None else \
            torch.as_tensor(obj.interval.indicator(logp.exp()))
        s = torch.where(counted, obj.s_of_logp(logp), 0.0).abs()
        h = 1e-6
        ds = torch.where(counted, (obj.s_of_logp(logp + h) - obj.s_of_logp(logp - h)) / (2 * h), 0.0)
        delta = 4 * eps * (z.abs().amax(-1) + 1)
        tol_f = s * delta + 8 * eps * (ref.abs() + 1) + tiny
        tol_g = ((ds.abs() * delta)[:, None] * (q - e_y).abs()
                 + (s * (delta + 8 * eps))[:, None] * (q + e_y)
                 + 2 * torch.finfo(out_dtype).eps * grad_ref.abs() + tiny)
    return tol_f, tol_g


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])


@pytest.mark.parametrize("spec", registered() + ["alpha(1e-6)", "alpha(-0.5)", "expr:(1-p)**2",
                                                 "expr:-p - log(p) + 1", "focal(2)@p<=0.5"])
def test_low_precision_matches_float64_at_extreme_p(spec, dtype):
    """float32 and bf16 logits: f and the gradient within float32's error of a float64 reference on
    the same (rounded) logits, for p from 1e-30 to 1 - 1e-4. E.g. alpha(1e-6) at p = 0.99 is 0.01
    in float32 only through expm1 (1 - exp(1e-6 log p) rounds to 0): theory/numeric.py's C99 rewrite."""
    obj = probsft.objective(spec)
    z64, labels = extreme_logits()
    z = z64.to(dtype)
    ref, grad_ref = _grad(lambda x: obj.loss(x, labels, reduction="none"), z.double())
    got, grad = _grad(lambda x: obj.loss(x, labels, reduction="none"), z)
    assert got.dtype == torch.float32 and grad.dtype == dtype
    tol_f, tol_g = low_precision_tolerances(obj, z.double(), ref, grad_ref, dtype)
    assert torch.all((got.double() - ref).abs() <= tol_f), (got, ref)
    assert torch.all((grad.double() - grad_ref).abs() <= tol_g)
    counted = counted_tokens(obj, z, labels)
    assert counted == len(EXTREME_P) if obj.interval is None else 0 < counted < len(EXTREME_P)


@settings(max_examples=40, deadline=None)
@given(batch=batches(), probs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_probe_set_alpha_is_an_ordinary_alpha_objective(batch, probs):
    """alpha(auto) resolves to alpha(mean p / (1 - mean p)) in [0, 10]; the resolved objective
    passes the closed-form-vs-autograd check like every objective; unresolved, a loss refuses."""
    logits, labels = batch
    auto = probsft.objective("alpha(auto)")
    obj = auto.resolve(probs)
    mean_p = float(np.mean(probs))
    want = 10.0 if mean_p >= 10 / 11 else mean_p / (1 - mean_p)
    assert math.isclose(_alpha_of(obj), want, abs_tol=1e-3)
    assert probsft.objective(obj.spec) == obj and not obj.needs_probe
    v1, g1 = _grad(lambda z: obj.loss(z, labels), logits)
    v2, g2 = _grad(lambda z: reference_loss(obj, z, labels), logits)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-9)
    with pytest.raises(probsft.SpecError, match="resolve"):
        auto.loss(logits, labels)


def _alpha_of(obj):
    return {"nll": 0.0, "p": 1.0}.get(obj.family) if obj.family != "alpha" else _param(obj.spec)


def test_deft_gradient_is_p_to_the_sumsq_times_q_minus_e_y():
    """DEFT's logit gradient p^alpha (q - e_y) with alpha = sum q^2 (arXiv 2602.11424), and its
    limits: a one-hot q (alpha = 1) gives -p's gradient, a uniform q (alpha = 1/V) NLL's at 1/V."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 2
    labels = torch.tensor([0, 3, 6, -100, 2])
    _, g = _grad(lambda z: probsft.objective("deft").loss(z, labels, reduction="sum"), logits)
    q = torch.softmax(logits, -1)
    a = (q ** 2).sum(-1)
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), 7).double()
    p = (q * onehot).sum(-1)
    want = (p ** a)[:, None] * (q - onehot) * (labels != -100)[:, None]
    torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)
    uniform = torch.zeros(1, 7, dtype=torch.float64)
    v, _ = _grad(lambda z: probsft.objective("deft").loss(z, torch.tensor([1])), uniform)
    assert math.isclose(float(v), (1 - (1 / 7) ** (1 / 7)) / (1 / 7), rel_tol=1e-12)
