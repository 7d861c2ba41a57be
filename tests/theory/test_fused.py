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
from torch.utils._python_dispatch import TorchDispatchMode

import probsft
from probsft.theory.losses import counted_tokens
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
                                                             "vocab_chunk_size", "gemm", "layout")})
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
@pytest.mark.parametrize("layout", ["row", "col"])
def test_every_objective_matches_naive(spec, reduction, schedule, layout):
    obj = probsft.objective(spec)
    h, W, b, y = _inputs(29, 8, 53, scale=0.7, masked=(2, 11))
    z = (h @ W.T + b).detach()
    y[0::3] = z[0::3].argmax(-1)                 # a third of the targets are the top logit: p high
    y[2] = y[11] = -100
    counted, valid = counted_tokens(obj, z, y), int((y != -100).sum())
    # thresholded objectives must really exclude some tokens (else this compares zeros)
    assert counted == valid if obj.interval is None else 0 < counted < valid
    upstream = torch.randn(29, dtype=torch.float64) if reduction == "none" else None
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, upstream, reduction=reduction, chunk_size=7,
                               schedule=schedule, vocab_chunk_size=10, layout=layout)
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)


@pytest.mark.parametrize("N,V,chunk", [(1, 5, 1), (1, 33, 64), (10, 7, 3), (64, 131, 64)])
def test_odd_shapes_and_reductions(N, V, chunk):
    obj = probsft.objective("alpha(5)@p<=0.9")
    h, W, b, y = _inputs(N, 6, V, scale=2.0, bias=False)
    for kw in ({"reduction": "sum"}, {"reduction": "mean"}, {"reduction": "sum", "num_items_in_batch": 37},
               {"reduction": "mean", "num_items_in_batch": torch.tensor(5.0)}):
        for schedule, layout in (("token", "row"), ("vocab", "row"), ("token", "col"), ("vocab", "col")):
            (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=chunk, schedule=schedule,
                                       vocab_chunk_size=chunk, layout=layout, **kw)
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
@pytest.mark.parametrize("layout", ["row", "col"])
def test_all_masked_gives_zero_loss_and_zero_grads(schedule, layout):
    h, W, b, y = _inputs(6, 4, 9, masked=range(6))
    loss = probsft.fused_linear_loss(h, W, y, "nll", bias=b, schedule=schedule, vocab_chunk_size=4,
                                     layout=layout)
    loss.backward()
    assert float(loss) == 0.0
    assert all(float(t.grad.abs().max()) == 0.0 for t in (h, W, b))


class _GemmRows(TorchDispatchMode):
    """Token rows of the GEMMs contracted over the vocabulary: [k, V] @ [V, H] (dhidden) and
    [S, n] @ [n, H] with n tokens (the vocabulary pass's dW); ``mm``/``addmm``/``addmm_``."""

    def __init__(self, V, H):
        super().__init__()
        self.V, self.H, self.dh_rows, self.vocab_pass_tokens = V, H, 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm", "addmm_"):
            a, b = args[-2:]
            if tuple(b.shape) == (self.V, self.H):
                self.dh_rows += a.shape[0]
            elif b.shape[1] == self.H and a.shape[0] < self.V and a.shape[1] != self.H:
                self.vocab_pass_tokens.add(a.shape[1])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("schedule", ["token", "vocab"])
@pytest.mark.parametrize("layout", ["row", "col"])
def test_tokens_of_weight_zero_are_left_out_of_the_gradient_gemms(reduction, schedule, layout):
    """A thresholded f gives the tokens below its threshold s_f = 0, so their rows of G are 0: on CPU
    the dhidden GEMMs run on the other tokens only (a chunk with none of them runs none), and so do
    the vocabulary pass's (30 live tokens padded to 64, not 150 to 192); values and gradients stay
    the naive path's."""
    obj = probsft.objective("p@p>=0.2")
    N, H, V = 150, 8, 40
    h, W, b, y = _inputs(N, H, V, scale=3.0)
    z = (h @ W.T + b).detach()
    y = z.argmin(-1)                                                  # p tiny: below the threshold
    live = torch.zeros(N, dtype=torch.bool)      # chunks of 48: 18 live tokens, none, 9, 3
    live[1:40:2] = live[128:150:2] = True
    live[[3, 5]] = False
    live[101] = True
    y[live] = z[live].argmax(-1)
    p = torch.softmax(z, -1).gather(-1, y[:, None]).squeeze(-1)
    assert torch.equal(p >= 0.2, live)           # exactly the live tokens pass the threshold
    n_live = int(live.sum())
    upstream = torch.randn(N, dtype=torch.float64) if reduction == "none" else None
    with _GemmRows(V, H) as gemms:
        (vn, gn), (vf, gf) = _both(obj, h, W, b, y, upstream, reduction=reduction, chunk_size=48,
                                   schedule=schedule, vocab_chunk_size=16, layout=layout)
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)
    assert gemms.dh_rows == n_live + N           # ours: the live tokens; naive: all N
    if schedule == "vocab":
        assert gemms.vocab_pass_tokens == {64}   # 30 live tokens padded to 64


def _error_bounds(obj, h, W, b, y, dtype):
    """Bounds on |low precision - float64| for the summed loss and the grads of h, W, b, from a
    rounding model that holds on any CPU: every GEMM accumulates in float32 (bf16 GEMMs included)
    and rounds its output once to ``dtype``; log-sum-exp, f, s_f and G = s_f (q - e_y) are float32,
    G is rounded to ``dtype`` before the gradient GEMMs. ``h, W, b`` are the rounded inputs in
    float64. Each bound carries a 2x safety factor over one rounding (eps, not eps/2)."""
    eps, eps32 = torch.finfo(dtype).eps, torch.finfo(torch.float32).eps
    N, H = h.shape
    V = W.shape[0]
    with torch.no_grad():
        z = h @ W.T + b
        size = h.abs() @ W.abs().T + b.abs()                                # [N, V]
        dz = (2 * eps + H * eps32) * size                                   # per-logit error
        dlogp = 2 * dz.amax(-1) + 4 * eps32 * (z.abs().amax(-1) + 1)        # [N]
        logp = torch.log_softmax(z, -1).gather(-1, y[:, None])[:, 0]
        q = torch.softmax(z, -1)
        e_y = torch.nn.functional.one_hot(y, V).double()
        counted = torch.as_tensor(obj.interval.indicator(logp.exp())) if obj.interval else \
            torch.ones(N, dtype=torch.bool)
        s = torch.where(counted, obj.s_of_logp(logp), 0.0).abs()
        step = 1e-6
        ds = torch.where(counted, (obj.s_of_logp(logp + step) - obj.s_of_logp(logp - step)) / (2 * step),
                         0.0).abs()
        f = torch.where(counted, obj.f_of_logp(logp), 0.0)
        G = s[:, None] * (q - e_y)
        dG = ((ds * dlogp)[:, None] * (q - e_y).abs() + (s * (dlogp + 8 * eps32))[:, None] * (q + e_y)
              + eps * G.abs())
        tol_loss = float((s * dlogp + 8 * eps32 * (f.abs() + 1)).sum())
        tol_h = dG @ W.abs() + (eps + V * eps32) * (G.abs() @ W.abs())
        tol_W = dG.T @ h.abs() + (eps + N * eps32) * (G.abs().T @ h.abs())
        tol_b = dG.sum(0) + (eps + N * eps32) * G.abs().sum(0)
    return tol_loss, (tol_h, tol_W, tol_b)


@pytest.mark.parametrize("schedule", ["token", "vocab", "auto"])
@pytest.mark.parametrize("gemm", ["input", "float32", "auto"])
@pytest.mark.parametrize("layout", ["row", "col"])
def test_bf16_is_as_accurate_as_the_naive_bf16_path(schedule, gemm, layout, monkeypatch):
    """bf16 inputs: fused errors vs a float64 reference are no larger than the naive bf16 path's,
    with bf16 GEMMs and with float32 GEMMs (W upcast slice by slice: slices of 300 rows here)."""
    monkeypatch.setattr("probsft.theory.fused._SLICE_ELEMENTS", 300 * 32)
    obj = probsft.objective("p")
    h64, W64, b64, y = _inputs(300, 32, 1000, scale=0.5, masked=(0, 7))
    (ref, gref), _ = _both(obj, h64, W64, b64, y)
    h, W, b = (t.detach().bfloat16().requires_grad_() for t in (h64, W64, b64))
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=64, schedule=schedule,
                               vocab_chunk_size=300, gemm=gemm, layout=layout)
    assert vf.dtype == torch.float32 and gf[1].dtype == torch.bfloat16
    err = lambda a, r: float((a.double() - r).abs().max() / r.abs().max())
    assert err(vf, ref) <= 1.5 * err(vn, ref) + 1e-3
    for a, c, r in zip(gf, gn, gref):
        assert err(a, r) <= 1.5 * err(c, r) + 2e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("schedule", ["token", "vocab", "auto"])
@pytest.mark.parametrize("spec", ["p", "nll", "alpha(1e-6)", "log(1-p)", "p@p>=0.2"])
@pytest.mark.parametrize("layout", ["row", "col"])
def test_low_precision_is_within_its_rounding_error_of_float64(spec, schedule, dtype, layout):
    """float32 / bf16 inputs with logits up to ~±40 (p from ~1e-30 to ~1): the fused sum and its
    gradients, and the naive path's, lie within the rounding-error bound of a float64 reference on
    the same rounded inputs. The bound depends on the dtype's eps, not on how a CPU's bf16 GEMM
    rounds, so the test holds on any x86 CPU."""
    obj = probsft.objective(spec)
    h64, W64, b64, y = _inputs(200, 32, 500, scale=1.5, masked=(0, 7))
    h, W, b = (t.detach().to(dtype).requires_grad_() for t in (h64, W64, b64))
    exact = [t.detach().double().requires_grad_() for t in (h, W, b)]
    z = exact[0].detach() @ exact[1].detach().T + exact[2].detach()
    y[1::2] = z[1::2].argmax(-1)                      # every other target is the top logit: p -> 1
    (ref, gref), _ = _both(obj, *exact, y, reduction="sum")
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=64, schedule=schedule,
                               vocab_chunk_size=300, reduction="sum", layout=layout)
    assert vf.dtype == torch.float32 and gf[1].dtype == dtype
    p = torch.softmax(z, -1).gather(-1, y.clamp(min=0)[:, None])[y != -100, 0]
    assert float(p.min()) < 1e-12 and float(p.max()) > 0.99           # extreme p on both sides
    tol_loss, tol_grads = _error_bounds(obj, *(t.detach() for t in exact), y.clamp(min=0), dtype)
    for value, grads in ((vf, gf), (vn, gn)):
        assert abs(float(value) - float(ref)) <= tol_loss
        for g, r, tol in zip(grads, gref, tol_grads):
            assert torch.all((g.double() - r).abs() <= tol + torch.finfo(torch.float32).tiny)


def test_errors_are_user_errors():
    h, W, b, y = _inputs(4, 3, 5)
    with pytest.raises(probsft.SpecError, match="quantile"):
        probsft.fused_linear_loss(h, W, y, "nll@p>=Q90")
    with pytest.raises(probsft.SpecError, match="resolve"):
        probsft.fused_linear_loss(h, W, y, "alpha(auto)")
    with pytest.raises(probsft.UserError, match="schedule"):
        probsft.fused_linear_loss(h, W, y, "nll", schedule="rows")
    with pytest.raises(probsft.UserError, match="layout"):
        probsft.fused_linear_loss(h, W, y, "nll", layout="diagonal")
    with pytest.raises(probsft.UserError, match="vocab_chunk_size"):
        probsft.fused_linear_loss(h, W, y, "nll", vocab_chunk_size=0)
    with pytest.raises(probsft.UserError, match="reduction"):
        probsft.fused_linear_loss(h, W, y, "nll", reduction="avg")
    with pytest.raises(probsft.UserError, match="labels must be in"):
        probsft.fused_linear_loss(h, W, torch.tensor([0, 1, 5, 2]), "nll")
    with pytest.raises(probsft.UserError, match="aligned"):
        probsft.fused_linear_loss(h, W, y[:3], "nll")
    for value in (float("nan"), float("inf"), -float("inf")):
        bad = W.detach().clone()
        bad[y[1], 0] = value                 # the target's logit of token 1: nan, +inf or -inf
        for layout in ("row", "col"):
            with pytest.raises(probsft.NonFiniteLogitsError):
                probsft.fused_linear_loss(h, bad, y, "nll", layout=layout)
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
       schedule=st.sampled_from(["token", "vocab"]), width=st.integers(1, 45),
       layout=st.sampled_from(["row", "col"]))
def test_hypothesis_matches_naive(N, V, chunk, alpha, lo, scale, seed, masked, schedule, width,
                                  layout):
    obj = probsft.objective(f"alpha({alpha})@p>={lo:.3f}")
    h, W, b, y = _inputs(N, 4, V, scale=scale, seed=seed, masked=range(min(masked, N)))
    (vn, gn), (vf, gf) = _both(obj, h, W, b, y, chunk_size=chunk, schedule=schedule,
                               vocab_chunk_size=width, layout=layout)
    _assert_close(vf, vn)
    for a, c in zip(gf, gn):
        _assert_close(a, c)


def _why_no_compile():
    """Why torch.compile cannot run on this machine's CPU (None when it can): inductor is missing,
    or it finds no C++ compiler. Only this is a reason to skip; any other error fails the test."""
    try:
        from torch._inductor import cpp_builder
    except ImportError as err:
        return f"torch._inductor unavailable: {err}"
    try:
        cpp_builder.get_cpp_compiler()
    except Exception as err:  # noqa: BLE001 - inductor raises a plain RuntimeError here
        return f"no C++ compiler for inductor: {err}"
    return None


@pytest.mark.slow
def test_compiled_chunk_matches_eager(spec="focal(2)@p<=0.9"):
    reason = _why_no_compile()
    if reason:
        pytest.skip(reason)
    h, W, b, y = _inputs(9, 4, 21, dtype=torch.float32, scale=2.0, masked=(1,))
    upstream = torch.randn(9, generator=torch.Generator().manual_seed(1))
    obj = probsft.objective(spec)
    for reduction in ("sum", "none"):          # grads in forward, and the recompute backward
        kw = dict(bias=b, chunk_size=4, reduction=reduction)
        eager = probsft.fused_linear_loss(h, W, y, obj, **kw)
        compiled = probsft.fused_linear_loss(h, W, y, obj, impl="compile", **kw)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
        g = upstream if reduction == "none" else torch.ones(())
        want = torch.autograd.grad((eager * g).sum(), [h, W, b])
        got = torch.autograd.grad((compiled * g).sum(), [h, W, b])
        for a, c in zip(got, want):       # float32: kernels fused differently round differently
            torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5 * float(c.abs().max()))


@pytest.mark.parametrize("n", [0, -3, float("nan"), torch.tensor(0)])
def test_a_non_positive_token_count_is_an_error_not_a_nan(n):
    h, W, b, y = _inputs(4, 3, 5)
    with pytest.raises(probsft.UserError, match="num_items_in_batch must be a token count > 0"):
        probsft.fused_linear_loss(h, W, y, "nll", reduction="sum", num_items_in_batch=n)
    assert torch.isfinite(probsft.fused_linear_loss(h, W, y, "nll", reduction="sum",
                                                    num_items_in_batch=torch.tensor(7)))


LOSS = probsft.fused_linear_loss


@pytest.fixture
def fake_calibration(tmp_path, monkeypatch):
    """fused_auto with a temporary cache and a fake timer: ``timed`` lists each timing's candidates;
    the fake makes "vocab/input/col" the fastest, then any other ".../col"."""
    from probsft.theory import fused_auto

    monkeypatch.setenv("PROBSFT_CACHE_DIR", str(tmp_path / "cache"))
    timed = []

    def fake(dtype, names, loss, *a, **k):
        assert loss is probsft.fused_linear_loss
        timed.append(names)
        return {name: 0.1 if name == "vocab/input/col" else 0.2 if name.endswith("/col") else 0.3
                for name in names}

    monkeypatch.setattr(fused_auto, "time_candidates", fake)
    fused_auto.calibrated.cache_clear()
    yield fused_auto, timed
    fused_auto.calibrated.cache_clear()


@pytest.mark.parametrize("units", [False, True])
def test_auto_rule_follows_the_cpu_features(units, fake_calibration, monkeypatch):
    """bf16 on a CPU without bf16 GEMM units: float32 GEMMs by rule, the token schedule where its
    accumulator fits (both schedules run the same float32 GEMMs, token one fewer) and the vocabulary
    schedule where it does not, only the layout timed; with units: bf16 and float32 GEMMs both timed,
    and both schedules where the token schedule fits; float32 weights: the token schedule, layouts
    timed. Off CPU: bf16 takes the vocabulary schedule (the accumulator alone would be twice the
    gradient cut-cross-entropy's memory is about), float32 the token one. Explicit choices are kept;
    non-CPU devices are never timed; bf16 GEMMs are never timed without units."""
    fused_auto, timed = fake_calibration
    monkeypatch.setattr(fused_auto, "low_precision_gemm_units", lambda dtype: units)
    W16, W32 = torch.zeros(4, 3, dtype=torch.bfloat16), torch.zeros(4, 3)
    gemms = ("input", "float32") if units else ("float32",)
    for fits in (False, True):
        impl, schedule, gemm, layout = fused_auto.choose(W16, fits, "auto", "auto", "auto", loss=LOSS)
        schedules = ("token", "vocab") if fits and units else ("token",) if fits else ("vocab",)
        assert timed[-1] == fused_auto.candidates(schedules, gemms, fused_auto.LAYOUTS)
        assert impl == "eager" and layout == "col"                      # the fake timer's fastest
        assert (schedule, gemm) == (("vocab", torch.bfloat16) if units else
                                    ("token" if fits else "vocab", torch.float32))
    assert fused_auto.choose(W32, False, "auto", "auto", "auto", loss=LOSS)[1:] == \
        ("token", torch.float32, "col")
    assert timed[-1] == ("token/input/row", "token/input/col")
    n = len(timed)
    assert fused_auto.choose(W16, True, "eager", "vocab", "input", "row") == \
        ("eager", "vocab", torch.bfloat16, "row")
    assert fused_auto.choose(W16, False, "auto", "auto", "input", loss=LOSS)[1:] == \
        (("vocab", torch.bfloat16, "col") if units else ("vocab", torch.bfloat16, "row"))
    assert fused_auto.choose(W16, True, "auto", "auto", "float32", loss=LOSS)[1:3] == \
        ("token", torch.float32)                   # float32 GEMMs: the schedule is not timed
    assert fused_auto.choose(W32.to("meta"), False, "auto", "auto", "auto", loss=LOSS)[1:] == \
        ("token", torch.float32, "row")
    for fits in (False, True):            # off CPU (CUDA) bf16 never takes the f32 accumulator
        assert fused_auto.choose(W16.to("meta"), fits, "auto", "auto", "auto", loss=LOSS)[1:] == \
            ("vocab", torch.bfloat16, "row")
    assert len(timed) == n + 2 * units     # without units: no bf16 GEMM timing, and the token
                                           # schedule's float32 layouts were timed above already
    with pytest.raises(probsft.UserError, match="gemm"):
        probsft.fused_linear_loss(W32, W32, torch.zeros(4, dtype=torch.long), "nll", gemm="fp8")


def test_plan_says_what_runs_and_keeps_bf16_within_the_memory_bound(monkeypatch):
    """plan(): float32 weights take the token schedule at any N; bf16 weights on CPU take it from
    the token count on where its float32 [V, H] accumulator fits a tenth of naive's 8·N·V bytes,
    the vocabulary schedule below; automatic chunks are capped at 2^26 logits for float32 weights
    on CPU, 2^25 for bf16; explicit choices and chunk sizes are kept; bad ones are errors."""
    from probsft.theory import fused, fused_auto

    monkeypatch.setattr(fused_auto, "low_precision_gemm_units", lambda dtype: False)
    V, H = 4096, 32
    W16, W32 = (torch.zeros((), dtype=d).expand(V, H) for d in (torch.bfloat16, torch.float32))
    fits = [n for n in range(64, 8192, 64) if fused._token_fits(n, V, H, fused._auto_width(n, V, 128))]
    first = fits[0]                 # chunks of about N / 6 leave 0.8 - 0.68 of 8·N·V for 8·V·H:
    assert 5 * (H + 128) <= first and set(range(68 * H, 8192, 64)) <= set(fits)   # all from 68 H
    # the accumulator decides: 16 MiB of a 19.2 MiB budget, with the chunk and a slice of W over it
    assert not fused._token_fits(1536, 16384, 256, 128) and fused._token_fits(1536, 16384, 64, 128)
    for n in (first - 64, first):
        run = fused.plan(W16, n, layout="row")
        assert run["schedule"] == ("token" if n == first else "vocab")
        assert run["gemm"] == torch.float32 and run["layout"] == "row"
        assert run["chunk_size"] == fused._auto_width(n, V, 128)
    assert fused.plan(W32, 64, layout="row")["schedule"] == "token"
    wide = {d: torch.zeros((), dtype=d).expand(131072, 8) for d in (torch.float32, torch.bfloat16)}
    assert [fused.plan(wide[d], 4096, layout="row")["chunk_size"] for d in wide] == [512, 256]
    assert fused.plan(W16, first, schedule="vocab", layout="row", chunk_size=7)["schedule"] == "vocab"
    assert fused.plan(W16, first, layout="row", chunk_size=7)["chunk_size"] == 7
    with pytest.raises(probsft.UserError, match="chunk_size must be a positive int"):
        fused.plan(W16, first, chunk_size=0)


def test_calibration_is_measured_once_per_machine_and_cached(fake_calibration, monkeypatch):
    """The first call times the candidates and writes the choice under this machine's key; later
    processes (a cleared in-memory cache) read it without timing; a broken file is measured again;
    an unwritable cache directory still gives a choice."""
    fused_auto, timed = fake_calibration
    names = fused_auto.candidates(["token"], ["input"], fused_auto.LAYOUTS)

    def choice():
        return fused_auto.calibrated(torch.float32, names, LOSS)

    assert choice() == ("token", "input", "col")
    entry = fused_auto.read_calibration()[fused_auto.machine_key(torch.float32, names)]
    assert entry["choice"] == "token/input/col"
    assert entry["seconds"] == {"token/input/row": 0.3, "token/input/col": 0.2}
    fused_auto.calibrated.cache_clear()                                    # a new process
    assert choice() == ("token", "input", "col") and len(timed) == 1
    fused_auto.cache_path().write_text("{not json")
    fused_auto.calibrated.cache_clear()
    assert choice() == ("token", "input", "col") and len(timed) == 2
    monkeypatch.setenv("PROBSFT_CACHE_DIR", "/proc/probsft-cannot-write-here")
    fused_auto.calibrated.cache_clear()
    assert choice() == ("token", "input", "col") and len(timed) == 3


def test_time_candidates_runs_the_fused_loss_for_each():
    from probsft.theory import fused_auto

    names = fused_auto.candidates(("token", "vocab"), ["input"], fused_auto.LAYOUTS)
    seconds = fused_auto.time_candidates(torch.float32, names, LOSS, shape=(8, 16, 64, 4), rounds=1)
    assert set(seconds) == set(names) and all(0 < t < 60 for t in seconds.values())
    every = fused_auto.candidates(("token", "vocab"), fused_auto.GEMMS, fused_auto.LAYOUTS)  # units
    assert len(fused_auto.time_candidates(torch.bfloat16, every, LOSS, (8, 16, 64, 4), 1)) == 8
    assert fused_auto.calibration_shape(names) == fused_auto.SCHEDULE_CALIBRATION_SHAPE
    assert fused_auto.calibration_shape(names[:1]) == fused_auto.CALIBRATION_SHAPE


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


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 20), V=st.integers(2, 40), chunk=st.integers(1, 25), scale=st.floats(0.1, 6.0),
       seed=st.integers(0, 2**16), masked=st.integers(0, 3), schedule=st.sampled_from(["token", "vocab"]),
       width=st.integers(1, 45), spec=st.sampled_from(ADAPTIVE), layout=st.sampled_from(["row", "col"]))
def test_hypothesis_adaptive_matches_naive(N, V, chunk, scale, seed, masked, schedule, width, spec,
                                           layout):
    """DEFT's per-token sum q^2 comes out of each token chunk: fused equals plain, both schedules."""
    h, W, b, y = _inputs(N, 4, V, scale=scale, seed=seed, masked=range(min(masked, N)))
    (vn, gn), (vf, gf) = _both(probsft.objective(spec), h, W, b, y, chunk_size=chunk,
                               schedule=schedule, vocab_chunk_size=width, layout=layout)
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
