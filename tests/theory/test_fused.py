"""probsft.fused_linear_loss against the naive path obj.loss(hidden @ W.T + b, labels).

Values and gradients for hidden, weight and bias, for every registered objective, both gradient
paths (grads in forward for mean/sum, recompute for none), odd shapes, masks, bf16 and errors.
Run: python -m pytest tests/theory/test_fused.py
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import probsft
from probsft.theory.spec import registered
from probsft.theory.statistics import TOKEN_STATS, token_stats_numpy, token_stats_torch
from tests.strategies import ADAPTIVE


def _inputs(N, H, V, dtype=torch.float64, seed=0, scale=1.0, bias=True, masked=()):
    gen = torch.Generator().manual_seed(seed)
    h = (torch.randn(N, H, generator=gen, dtype=torch.float64) * scale).to(dtype).requires_grad_()
    W = torch.randn(V, H, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(V, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    y = torch.randint(0, V, (N,), generator=gen)
    for i in masked:
        y[i] = -100
    return h, W, b, y


def _both(obj, h, W, b, y, upstream=None, **kw):
    """(values, grads) of the naive path and of the fused path for the same upstream gradient."""
    params = [t for t in (h, W, b) if t is not None]
    naive = obj.loss(h @ W.T + (b if b is not None else 0), y,
                     **{k: v for k, v in kw.items() if k not in ("chunk_size", "schedule", "impl",
                                                             "vocab_chunk_size")})
    fused = probsft.fused_linear_loss(h, W, y, obj, bias=b, **kw)
    g = torch.ones_like(naive) if upstream is None else upstream
    grads_n = torch.autograd.grad((naive * g).sum(), params, allow_unused=True)
    grads_f = torch.autograd.grad((fused * g).sum(), params, allow_unused=True)
    return (naive, grads_n), (fused, grads_f)


def _assert_close(a, b, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a.detach(), b.detach(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("spec", registered() + ADAPTIVE)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("schedule", ["token", "vocab"])
def test_every_objective_matches_naive(spec, reduction, schedule):
    obj = probsft.objective(spec)
    h, W, b, y = _inputs(29, 8, 53, scale=0.7, masked=(2, 11))
    upstream = torch.randn(29, dtype=torch.float64) if reduction == "none" else None
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, upstream, reduction=reduction, chunk_size=7,
                               schedule=schedule, vocab_chunk_size=10)
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)


@pytest.mark.parametrize("N,V,chunk", [(1, 5, 1), (1, 33, 64), (10, 7, 3), (64, 131, 64)])
def test_odd_shapes_and_reductions(N, V, chunk):
    obj = probsft.objective("alpha(5)@p<=0.9")
    h, W, b, y = _inputs(N, 6, V, scale=2.0, bias=False)
    for kw in ({"reduction": "sum"}, {"reduction": "mean"}, {"reduction": "sum", "num_items_in_batch": 37},
               {"reduction": "mean", "num_items_in_batch": torch.tensor(5.0)}):
        for schedule in ("token", "vocab"):
            (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=chunk, schedule=schedule,
                                       vocab_chunk_size=chunk, **kw)
            _assert_close(vf, vn)
            for a, c in zip(gf[:2], gn[:2]):
                _assert_close(a, c)


def test_batched_shape_and_custom_ignore_index():
    obj = probsft.objective("nll")
    h, W, b, y = _inputs(12, 5, 17)
    y[4] = 3                                        # index 3 is ignored, so a 3 label is masked
    h3, y3 = h.reshape(3, 4, 5), y.reshape(3, 4)
    naive = obj.loss(h3 @ W.T + b, y3, ignore_index=3, reduction="none")
    fused = probsft.fused_linear_loss(h3, W, y3, "nll", bias=b, ignore_index=3, reduction="none")
    assert fused.shape == (3, 4) and float(fused[y3 == 3].abs().sum()) == 0.0
    _assert_close(fused, naive)


@pytest.mark.parametrize("schedule", ["token", "vocab"])
def test_all_masked_gives_zero_loss_and_zero_grads(schedule):
    h, W, b, y = _inputs(6, 4, 9, masked=range(6))
    loss = probsft.fused_linear_loss(h, W, y, "nll", bias=b, schedule=schedule, vocab_chunk_size=4)
    loss.backward()
    assert float(loss) == 0.0
    assert all(float(t.grad.abs().max()) == 0.0 for t in (h, W, b))


@pytest.mark.parametrize("schedule", ["token", "vocab", "auto"])
def test_bf16_is_as_accurate_as_the_naive_bf16_path(schedule):
    """bf16 inputs: fused errors vs a float64 reference are no larger than the naive bf16 path's."""
    obj = probsft.objective("p")
    h64, W64, b64, y = _inputs(300, 32, 1000, scale=0.5, masked=(0, 7))
    (ref, gref), _ = _both(obj, h64, W64, b64, y)
    h, W, b = (t.detach().bfloat16().requires_grad_() for t in (h64, W64, b64))
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=64, schedule=schedule,
                               vocab_chunk_size=300)
    assert vf.dtype == torch.float32 and gf[1].dtype == torch.bfloat16
    err = lambda a, r: float((a.double() - r).abs().max() / r.abs().max())
    assert err(vf, ref) <= 1.5 * err(vn, ref) + 1e-3
    for a, c, r in zip(gf, gn, gref):
        assert err(a, r) <= 1.5 * err(c, r) + 2e-3


def test_errors_are_user_errors():
    h, W, b, y = _inputs(4, 3, 5)
    with pytest.raises(probsft.SpecError, match="quantile"):
        probsft.fused_linear_loss(h, W, y, "nll@p>=Q90")
    with pytest.raises(probsft.SpecError, match="resolve"):
        probsft.fused_linear_loss(h, W, y, "alpha(auto)")
    with pytest.raises(probsft.UserError, match="schedule"):
        probsft.fused_linear_loss(h, W, y, "nll", schedule="rows")
    with pytest.raises(probsft.UserError, match="vocab_chunk_size"):
        probsft.fused_linear_loss(h, W, y, "nll", vocab_chunk_size=0)
    with pytest.raises(probsft.UserError, match="reduction"):
        probsft.fused_linear_loss(h, W, y, "nll", reduction="avg")
    with pytest.raises(probsft.UserError, match="labels must be in"):
        probsft.fused_linear_loss(h, W, torch.tensor([0, 1, 5, 2]), "nll")
    with pytest.raises(probsft.UserError, match="aligned"):
        probsft.fused_linear_loss(h, W, y[:3], "nll")
    bad = W.detach().clone()
    bad[2, 0] = float("nan")
    with pytest.raises(probsft.NonFiniteLogitsError):
        probsft.fused_linear_loss(h, bad, y, "nll")
    resolved = probsft.objective("nll@p>=Q50").with_quantiles([0.1, 0.2, 0.9])
    assert torch.isfinite(probsft.fused_linear_loss(h, W, y, resolved))


def test_no_grad_and_hidden_only_grad():
    h, W, b, y = _inputs(5, 3, 8)
    with torch.no_grad():
        _assert_close(probsft.fused_linear_loss(h, W, y, "dft", bias=b),
                      probsft.objective("dft").loss(h @ W.T + b, y))
    Wc = W.detach()
    probsft.fused_linear_loss(h, Wc, y, "dft").backward()
    assert h.grad is not None and Wc.grad is None


@pytest.mark.parametrize("schedule", ["token", "vocab"])
def test_weight_only_grad_and_second_backward(schedule):
    h, W, b, y = _inputs(7, 3, 11, masked=(3,))
    hc = h.detach()
    loss = probsft.fused_linear_loss(hc, W, y, "p", bias=b, schedule=schedule, vocab_chunk_size=4)
    loss.backward(retain_graph=True)
    ref = torch.autograd.grad(probsft.objective("p").loss(hc @ W.T + b, y), [W, b])
    _assert_close(W.grad, ref[0])
    _assert_close(b.grad, ref[1])
    with pytest.raises(probsft.UserError, match="twice"):
        loss.backward()


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 20), V=st.integers(2, 40), chunk=st.integers(1, 25),
       alpha=st.sampled_from(["0.25", "1/3", "2", "7"]), lo=st.floats(0.0, 0.6),
       scale=st.floats(0.1, 4.0), seed=st.integers(0, 2**16), masked=st.integers(0, 3),
       schedule=st.sampled_from(["token", "vocab"]), width=st.integers(1, 45))
def test_hypothesis_matches_naive(N, V, chunk, alpha, lo, scale, seed, masked, schedule, width):
    obj = probsft.objective(f"alpha({alpha})@p>={lo:.3f}")
    h, W, b, y = _inputs(N, 4, V, scale=scale, seed=seed, masked=range(min(masked, N)))
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=chunk, schedule=schedule,
                               vocab_chunk_size=width)
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)


def test_compiled_chunk_matches_eager():
    pytest.importorskip("torch._inductor")
    h, W, b, y = _inputs(9, 4, 21, dtype=torch.float32, masked=(1,))
    eager = probsft.fused_linear_loss(h, W, y, "focal(2)", bias=b, chunk_size=4)
    try:
        compiled = probsft.fused_linear_loss(h, W, y, "focal(2)", bias=b, chunk_size=4, impl="compile")
    except Exception as err:  # no C++ toolchain for inductor on this machine
        pytest.skip(f"torch.compile unavailable: {err}")
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 20), V=st.integers(2, 40), chunk=st.integers(1, 25), scale=st.floats(0.1, 6.0),
       seed=st.integers(0, 2**16), masked=st.integers(0, 3), schedule=st.sampled_from(["token", "vocab"]),
       width=st.integers(1, 45), spec=st.sampled_from(ADAPTIVE))
def test_hypothesis_adaptive_matches_naive(N, V, chunk, scale, seed, masked, schedule, width, spec):
    """DEFT's per-token sum q^2 comes out of each token chunk: fused equals plain, both schedules."""
    h, W, b, y = _inputs(N, 4, V, scale=scale, seed=seed, masked=range(min(masked, N)))
    (vn, gn), (vf, gf) = _both(probsft.objective(spec), h, W, b, y, chunk_size=chunk,
                               schedule=schedule, vocab_chunk_size=width)
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)


@pytest.mark.parametrize("name", sorted(TOKEN_STATS))
def test_token_statistics_equal_their_definitions(name):
    """sum q^2 = exp(lse(2z) - 2 lse(z)) and H = lse - sum q z, without the N x V probabilities,
    equal the direct float64 computation, also for a one-hot and a uniform q and -inf logits."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 11, generator=gen, dtype=torch.float64) * 3
    z[4] = torch.tensor([1e4] + [-1e4] * 10, dtype=torch.float64)     # one-hot q
    z[5] = 0.0                                                         # uniform q
    z[3, 2] = float("-inf")                                            # a token masked out
    q = torch.softmax(z, -1)
    direct = {"sumsq": (q ** 2).sum(-1),
              "entropy": -torch.where(q > 0, q * torch.log(q), torch.zeros_like(q)).sum(-1)}[name]
    got = token_stats_torch([name], z, torch.logsumexp(z, -1))[name]
    torch.testing.assert_close(got, direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(token_stats_numpy([name], z.numpy())[name], direct.numpy(),
                               rtol=1e-12, atol=1e-12)
