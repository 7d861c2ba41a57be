"""probsft.fused_linear_loss against the naive path obj.loss(hidden @ W.T + b, labels).

Values and gradients for hidden, weight and bias, for every registered objective, both gradient
paths (grads in forward for mean/sum, recompute for none), odd shapes, masks, bf16 and errors.
Run: python -m pytest tests/theory/test_fused.py
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import probsft
from probsft.theory.spec import registered


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
                                                             "vocab_chunk_size", "gemm")})
    fused = probsft.fused_linear_loss(h, W, y, obj, bias=b, **kw)
    g = torch.ones_like(naive) if upstream is None else upstream
    grads_n = torch.autograd.grad((naive * g).sum(), params, allow_unused=True)
    grads_f = torch.autograd.grad((fused * g).sum(), params, allow_unused=True)
    return (naive, grads_n), (fused, grads_f)


def _assert_close(a, b, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a.detach(), b.detach(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("spec", registered())
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
@pytest.mark.parametrize("gemm", ["input", "float32", "auto"])
def test_bf16_is_as_accurate_as_the_naive_bf16_path(schedule, gemm, monkeypatch):
    """bf16 inputs: fused errors vs a float64 reference are no larger than the naive bf16 path's,
    with bf16 GEMMs and with float32 GEMMs (W upcast slice by slice: slices of 300 rows here)."""
    monkeypatch.setattr("probsft.theory.fused._VOCAB_SLICE", 300)
    obj = probsft.objective("p")
    h64, W64, b64, y = _inputs(300, 32, 1000, scale=0.5, masked=(0, 7))
    (ref, gref), _ = _both(obj, h64, W64, b64, y)
    h, W, b = (t.detach().bfloat16().requires_grad_() for t in (h64, W64, b64))
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=64, schedule=schedule,
                               vocab_chunk_size=300, gemm=gemm)
    assert vf.dtype == torch.float32 and gf[1].dtype == torch.bfloat16
    err = lambda a, r: float((a.double() - r).abs().max() / r.abs().max())
    assert err(vf, ref) <= 1.5 * err(vn, ref) + 1e-3
    for a, c, r in zip(gf, gn, gref):
        assert err(a, r) <= 1.5 * err(c, r) + 2e-3


def test_errors_are_user_errors():
    h, W, b, y = _inputs(4, 3, 5)
    with pytest.raises(probsft.SpecError, match="quantile"):
        probsft.fused_linear_loss(h, W, y, "nll@p>=Q90")
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


@pytest.mark.parametrize("n", [0, -3, float("nan"), torch.tensor(0)])
def test_a_non_positive_token_count_is_an_error_not_a_nan(n):
    h, W, b, y = _inputs(4, 3, 5)
    with pytest.raises(probsft.UserError, match="num_items_in_batch must be a token count > 0"):
        probsft.fused_linear_loss(h, W, y, "nll", reduction="sum", num_items_in_batch=n)
    assert torch.isfinite(probsft.fused_linear_loss(h, W, y, "nll", reduction="sum",
                                                    num_items_in_batch=torch.tensor(7)))
@pytest.mark.parametrize("units", [False, True])
def test_auto_rule_follows_the_cpu_features(units, monkeypatch):
    """bf16 on a CPU without bf16 GEMM units: float32 GEMMs; with them: bf16 GEMMs; float32 weights:
    the token schedule with float32 GEMMs either way. Explicit choices are kept."""
    from probsft.theory import fused_auto

    monkeypatch.setattr(fused_auto, "low_precision_gemm_units", lambda dtype: units)
    W16, W32 = torch.zeros(4, 3, dtype=torch.bfloat16), torch.zeros(4, 3)
    impl, schedule, gemm = fused_auto.choose(W16, 8, "auto", "auto", "auto")
    assert schedule == "vocab" and impl in ("eager", "compile")
    assert gemm == (torch.bfloat16 if units else torch.float32)
    assert fused_auto.choose(W32, 8, "auto", "auto", "auto")[1:] == ("token", torch.float32)
    assert fused_auto.choose(W16, 8, "eager", "token", "input") == ("eager", "token", torch.bfloat16)
    with pytest.raises(probsft.UserError, match="gemm"):
        probsft.fused_linear_loss(W32, W32, torch.zeros(4, dtype=torch.long), "nll", gemm="fp8")


@pytest.mark.parametrize("spec", ["nll", "-p", "dft", "alpha(5)@p<=0.9"])
def test_cce_backend_matches_naive(spec):
    """impl="cce": cut-cross-entropy's per-token loss (filtering off) with f(p) = f(exp(-ℓ)) gives the
    naive path's values and gradients (float32: CCE's CPU path computes in float32)."""
    pytest.importorskip("cut_cross_entropy")
    obj = probsft.objective(spec)
    h, W, _, y = _inputs(24, 8, 40, dtype=torch.float32, scale=0.7, bias=False, masked=(3, 9))
    for reduction in ("mean", "none"):
        upstream = torch.randn(24) if reduction == "none" else None
        (vn, gn), (vf, gf) = _both(obj, h, W, None, y, upstream, reduction=reduction, impl="cce")
        _assert_close(vf, vn, rtol=1e-5, atol=1e-6)
        for a, c in zip(gf, gn):
            _assert_close(a, c, rtol=1e-4, atol=1e-6)


def test_cce_backend_falls_back_with_a_bias():
    h, W, b, y = _inputs(6, 4, 9, masked=(1,))
    (vn, gn), (vf, gf) = _both(probsft.objective("-p"), h, W, b, y, impl="cce")
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)
