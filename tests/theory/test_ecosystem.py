"""The SFT ecosystem's objectives (probsft.theory.ecosystem) against re-implementations of the code
that ships them, written here independently from that code (float64, torch.autograd):

  EAFT   LLaMA-Factory src/llamafactory/train/trainer_utils.py::_eaft_cross_entropy (top-20
         entropy / 3.0, ** alpha) and axolotl src/axolotl/monkeypatch/loss/eaft.py::eaft_loss
         (top-k entropy with log(p + 1e-10), ** alpha, not normalised)
  CHORD  modelscope/Trinity-RFT trinity/algorithm/policy_loss_fn/chord_policy_loss.py::SFTPhiLossFn
  ASFT   zhuchichi56/ASFT train_v2.py (mode "asft"): CE·sg(p) + kl_weight·KL(ref || model)

and the closed-form logit gradients (Lemma 3.1: s_f (q - e_y); the anchor adds lambda (q - r)).
Run: python -m pytest tests/theory/test_ecosystem.py
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import probsft
from probsft.errors import SpecError, UserError
from probsft.theory.losses import token_terms
from probsft.theory.statistics import token_stats_numpy, token_stats_torch
from tests.strategies import batches


def _masked_mean(per_token, labels):
    valid = labels != -100
    return per_token[valid].sum() / valid.sum().clamp(min=1)


def llama_factory_eaft(logits, labels, alpha=1.0, k=20, norm=3.0):
    per_token = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")
    with torch.no_grad():
        top, _ = torch.topk(logits.detach(), k=min(k, logits.shape[-1]), dim=-1)
        log_top = top - torch.logsumexp(top, dim=-1, keepdim=True)
        entropy = -(torch.exp(log_top) * log_top).sum(-1)
        weight = torch.pow(entropy / norm, alpha)
    return _masked_mean(per_token * weight, labels)


def axolotl_eaft(logits, labels, alpha=1.0, k=20):
    per_token = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")
    with torch.no_grad():
        top, _ = torch.topk(logits.detach(), k=min(k, logits.shape[-1]), dim=-1)
        probs = F.softmax(top, dim=-1)
        weight = torch.pow(-(probs * torch.log(probs + 1e-10)).sum(-1), alpha)
    return _masked_mean(per_token * weight, labels)


def trinity_chord_phi(logits, labels):
    safe = labels.clamp(min=0)
    logprob = torch.log_softmax(logits, -1).gather(-1, safe[:, None])[:, 0]
    prob = torch.exp(logprob)
    return _masked_mean(-logprob * (prob * (1 - prob)).detach(), labels)


def asft_repo(logits, labels, ref_logits, kl_weight=0.1, keep=None):
    token_losses = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")
    probs = torch.softmax(logits, dim=-1)
    weights = probs.gather(1, labels.clamp(min=0, max=probs.size(-1) - 1)[:, None])[:, 0].detach()
    kl = F.kl_div(F.log_softmax(logits, dim=-1), F.softmax(ref_logits, dim=-1),
                  reduction="none").sum(-1)
    per_token = token_losses * weights + kl_weight * kl
    valid = (labels != -100) if keep is None else (labels != -100) & keep
    return per_token[valid].sum() / valid.sum().clamp(min=1)


def _value_and_grad(fn, logits):
    z = logits.clone().requires_grad_()
    out = fn(z)
    out.backward()
    return out.detach(), z.grad


EXACT = {"value": (1e-9, 1e-12), "grad": (1e-8, 1e-12)}     # (rtol, atol): float64 against float64


def _assert_same_loss(ours, reference, logits, tol=EXACT):
    """Our loss and a reference implementation agree on ``logits``: value and gradient (each at
    its (rtol, atol) of ``tol``); returns the reference's value."""
    v1, g1 = _value_and_grad(ours, logits)
    v2, g2 = _value_and_grad(reference, logits)
    torch.testing.assert_close(v1, v2, rtol=tol["value"][0], atol=tol["value"][1])
    torch.testing.assert_close(g1, g2, rtol=tol["grad"][0], atol=tol["grad"][1])
    return v2


def _ref_logits(logits, seed):
    gen = torch.Generator().manual_seed(seed)
    return logits + torch.randn(logits.shape, generator=gen, dtype=logits.dtype)


@settings(max_examples=60, deadline=None)
@given(batch=batches(max_v=48, scale=6.0),
       params=st.sampled_from([(1, 20, 3), (2, 5, 3), (1 / 2, 20, 3), (1, 2, 7 / 10)]))
def test_eaft_equals_llama_factory_s_code(batch, params):
    logits, labels = batch
    a, k, c = params
    obj = probsft.objective(f"eaft({a},{k},{c})")
    v2 = _assert_same_loss(lambda z: obj.loss(z, labels),
                           lambda z: llama_factory_eaft(z, labels, a, k, c), logits)
    np.testing.assert_allclose(obj.loss_numpy(logits.numpy(), labels.numpy()), float(v2),
                               rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(batch=batches(max_v=48, scale=6.0))
def test_eaft_1_20_1_is_axolotl_s_unnormalised_scaling(batch):
    """axolotl's log(p + 1e-10) moves the entropy by at most 20e-10: absolute tolerance."""
    logits, labels = batch
    _assert_same_loss(lambda z: probsft.objective("eaft(1,20,1)").loss(z, labels),
                      lambda z: axolotl_eaft(z, labels), logits,
                      {"value": (1e-7, 1e-7), "grad": (1e-6, 1e-7)})


def test_eaft_defaults_are_llama_factory_s():
    assert probsft.objective("eaft") == probsft.objective("eaft(1,20,3)")
    assert probsft.objective("eaft(2)").spec == "eaft(2,20,3)"
    assert probsft.objective(" eaft ( 1 , 20 , 3 ) ").spec == "eaft(1,20,3)"


@settings(max_examples=60, deadline=None)
@given(batch=batches())
def test_chord_equals_trinity_s_phi_loss(batch):
    logits, labels = batch
    _assert_same_loss(lambda z: probsft.objective("chord").loss(z, labels),
                      lambda z: trinity_chord_phi(z, labels), logits)


@settings(max_examples=60, deadline=None)
@given(batch=batches(scale=6.0), lam=st.sampled_from([0.1, 0.5, 2.0]), seed=st.integers(0, 99))
def test_asft_equals_the_asft_repo_s_loss(batch, lam, seed):
    logits, labels = batch
    ref = _ref_logits(logits, seed)
    obj = probsft.objective(f"asft({lam})")
    v2 = _assert_same_loss(lambda z: obj.loss(z, labels, ref_logits=ref),
                           lambda z: asft_repo(z, labels, ref, lam), logits)
    np.testing.assert_allclose(obj.loss_numpy(logits.numpy(), labels.numpy(), ref_logits=ref.numpy()),
                               float(v2), rtol=1e-9, atol=1e-12)


def test_asft_threshold_counts_the_anchor_where_it_counts_f():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 9, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, 9, (40,), generator=gen)
    ref = _ref_logits(logits, 4)
    keep = torch.softmax(logits, -1).gather(-1, labels[:, None])[:, 0] >= 0.2
    _assert_same_loss(lambda z: probsft.objective("asft@p>=0.2").loss(z, labels, ref_logits=ref),
                      lambda z: asft_repo(z, labels, ref, 0.1, keep), logits)


@settings(max_examples=40, deadline=None)
@given(batch=batches(max_v=40, scale=6.0),
       spec=st.sampled_from(["eaft", "eaft(2,4,1)", "chord", "asft(0.3)"]))
def test_closed_form_logit_gradient(batch, spec):
    """d(sum of per-token losses)/dz = s (q - e_y) [+ lambda (q - r)] on counted tokens, with
    s = (H_K/C)^A (EAFT), p (1 - p) (CHORD), p (ASFT's DFT part)."""
    logits, labels = batch
    obj = probsft.objective(spec)
    ref = _ref_logits(logits, 0) if obj.needs_reference else None
    _, grad = _value_and_grad(lambda z: obj.loss(z, labels, reduction="sum", ref_logits=ref), logits)
    valid = (labels != -100).to(logits.dtype)[:, None]
    q = torch.softmax(logits, -1)
    e_y = F.one_hot(labels.clamp(min=0), logits.shape[-1]).to(logits.dtype)
    p = (q * e_y).sum(-1, keepdim=True)
    if obj.family == "eaft":
        a, k, c = (float(x) for x in spec[5:-1].split(",")) if "(" in spec else (1, 20, 3)
        top = torch.topk(logits, min(int(k), logits.shape[-1]), -1).values
        h = -(torch.softmax(top, -1) * torch.log_softmax(top, -1)).sum(-1, keepdim=True)
        s = (h / c) ** a
    else:
        s = p * (1 - p) if obj.family == "chord" else p
    want = valid * s * (q - e_y)
    if ref is not None:
        want = want + valid * float(obj.anchor) * (q - torch.softmax(ref, -1))
    torch.testing.assert_close(grad, want, rtol=1e-8, atol=1e-12)


def test_num_items_in_batch_and_sum_reductions():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 30, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 30, (3, 5), generator=gen)
    labels[0, :2] = -100
    ref = _ref_logits(logits, 2)
    for spec in ("eaft", "chord", "asft"):
        obj = probsft.objective(spec)
        kw = {"ref_logits": ref} if obj.needs_reference else {}
        total = obj.loss(logits, labels, reduction="sum", **kw)
        per = obj.loss(logits, labels, reduction="none", **kw)
        assert per.shape == labels.shape and float(per[0, :2].abs().sum()) == 0.0
        torch.testing.assert_close(per.sum(), total)
        torch.testing.assert_close(obj.loss(logits, labels, num_items_in_batch=40, **kw), total / 40)
        torch.testing.assert_close(obj.loss(logits, labels, **kw), total / 13)


def test_asft_needs_the_base_model_s_logits():
    logits = torch.randn(4, 10, dtype=torch.float64)
    labels = torch.tensor([1, 2, -100, 3])
    asft = probsft.objective("asft")
    assert asft.needs_reference and not probsft.objective("dft").needs_reference
    with pytest.raises(UserError, match="ref_logits"):
        asft.loss(logits, labels)
    with pytest.raises(UserError, match="ref_logits"):
        asft.loss_numpy(logits.numpy(), labels.numpy())
    with pytest.raises(UserError, match="shape"):
        asft.loss(logits, labels, ref_logits=logits[:, :5])
    with pytest.raises(UserError, match="no KL anchor"):
        probsft.objective("nll").loss(logits, labels, ref_logits=logits)
    with pytest.raises(UserError, match="fused path"):
        probsft.fused_linear_loss(torch.randn(4, 6, dtype=torch.float64),
                                  torch.randn(10, 6, dtype=torch.float64), labels, "asft")
    with pytest.raises(UserError, match="KL anchor"):
        token_terms(asft, torch.zeros(4, dtype=torch.float64), labels != -100)
    with pytest.raises(UserError, match="KL anchor"):             # a p-only path (the simulator)
        asft.s_of_logp(torch.zeros(4, dtype=torch.float64))
    assert asft.W(np.array([0.5]))[0] == pytest.approx(0.25)      # W_f of its p-part, DFT's
    # at the start of training the model is its own reference: the anchor adds nothing
    torch.testing.assert_close(asft.loss(logits, labels, ref_logits=logits),
                               probsft.objective("dft").loss(logits, labels))


@pytest.mark.parametrize("spec", ["eaft", "eaft(1,20,1)", "chord"])
def test_the_fused_linear_loss_equals_the_materialised_one(spec):
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(2, 7, 16, generator=gen, dtype=torch.float64)
    W = torch.randn(50, 16, generator=gen, dtype=torch.float64) / 4
    labels = torch.randint(0, 50, (2, 7), generator=gen)
    labels[1, 0] = -100
    v1, (gh1, gW1) = _loss_grads(lambda hh, WW: probsft.fused_linear_loss(hh, WW, labels, spec,
                                                                         chunk_size=5), h, W)
    v2, (gh2, gW2) = _loss_grads(lambda hh, WW: probsft.objective(spec).loss(hh @ WW.T, labels), h, W)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gh1, gh2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gW1, gW2, rtol=1e-9, atol=1e-12)


def _loss_grads(fn, *inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    out.backward()
    return out.detach(), [x.grad for x in leaves]


def test_top_k_entropy_statistic_equals_its_definition():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 30, generator=gen, dtype=torch.float64) * 3
    z[3, :25] = float("-inf")                          # fewer than K finite logits
    z[4] = 0.0                                         # uniform: H = ln K
    for k in (20, 40):                                 # 40 > V: all 30 logits
        top = torch.sort(z, -1, descending=True).values[:, :min(k, 30)]
        q = torch.softmax(top, -1)
        want = -torch.where(q > 0, q * torch.log(q), torch.zeros_like(q)).sum(-1)
        name = f"entropy_top{k}"
        got = token_stats_torch([name], z, torch.logsumexp(z, -1))[name]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(token_stats_numpy([name], z.numpy())[name], want.numpy(),
                                   rtol=1e-12, atol=1e-12)
    assert float(got[4]) == pytest.approx(np.log(30))


@pytest.mark.parametrize("bad, why", [
    ("eaft(1,2.5)", "integer"), ("eaft(1,20,0)", "C"), ("eaft(0)", "nll"), ("eaft(1,1)", "integer"),
    ("eaft(1,20,3,4)", "takes 3"), ("asft(0)", "dft"), ("asft(-1)", "λ"), ("chord(1)", "takes 0"),
])
def test_bad_parameters_are_spec_errors(bad, why):
    with pytest.raises(SpecError, match=why):
        probsft.objective(bad)


@pytest.mark.parametrize("spec", ["eaft(1,20,3)", "eaft(1,20,1)", "eaft(1/3,8,2.5)", "chord",
                                  "asft(0.1)", "asft(1/3)@p>=0.2"])
def test_canonical_specs_round_trip(spec):
    obj = probsft.objective(spec)
    assert obj.spec == spec and probsft.objective(obj.spec) == obj
