"""Gradient accumulation: k micro-batches give the gradient of one step on the whole batch, for every
registered objective (thresholded ones included, whose counted tokens depend on p)."""

import pytest
import torch

import probsft
from probsft.theory.spec import registered
from probsft.validate.accumulate import accumulate_gradients
from probsft.validate.data import collate, tokenize_sft
from tests.validate.conftest import make_model, make_records

SPECS = list(registered()) + ["nll@p<=0.3", "p@0.1<=p<=0.6", "alpha(2)@p>=Q50"]


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.fixture(scope="module")
def setup():
    from probsft.validate.tiny import build_char_tokenizer
    from tests.validate.conftest import CHARS

    tok = build_char_tokenizer(CHARS)
    examples = tokenize_sft(make_records(12, seed=1), tok, 64)
    # float64 (LlamaRMSNorm still rounds through float32, hence the ~1e-7 relative tolerance);
    # spread p over (0, 1) so that the thresholds bite.
    model = make_model(tok, spread=40.0).double()
    return tok, examples, model


@pytest.mark.parametrize("spec", SPECS)
def test_accumulated_equals_full_batch(setup, spec):
    tok, examples, model = setup
    obj = probsft.objective(spec)
    full = collate(examples, tok.pad_token_id)
    if obj.interval is not None and obj.interval.has_quantile:
        from probsft.validate.probe import token_probs
        obj = obj.with_quantiles(token_probs(model, examples, tok.pad_token_id).numpy())
    # Reference: one step on the full batch through the objective's own mean loss.
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=full["input_ids"], attention_mask=full["attention_mask"]).logits
    ref_loss = obj.loss(logits[:, :-1], full["labels"][:, 1:], reduction="mean")
    ref_loss.backward()
    ref = _grads(model)
    from probsft.theory.losses import counted_tokens
    n_counted = counted_tokens(obj, logits[:, :-1], full["labels"][:, 1:])
    n_valid = int((full["labels"][:, 1:] != -100).sum())
    # The thresholds really select a strict, non-empty subset (otherwise the test proves little).
    if obj.interval is not None:
        assert 0 < n_counted < n_valid
    # k = 4 uneven micro-batches (sizes 2, 3, 3, 4) with different padding and token counts.
    model.zero_grad(set_to_none=True)
    parts = [examples[0:2], examples[2:5], examples[5:8], examples[8:12]]
    stats = accumulate_gradients(model, [collate(p, tok.pad_token_id) for p in parts], obj)
    assert stats.counted == n_counted and stats.valid == n_valid
    assert stats.loss == pytest.approx(float(ref_loss.detach()), rel=1e-10)
    # A wrong normaliser (per-micro-batch mean, valid instead of counted tokens) is off by >1e-2.
    scale = max(float(r.abs().max()) for r in ref)
    for g, r in zip(_grads(model), ref):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6 * scale)


def test_authors_mean_of_means_differs_when_counts_differ(setup):
    """The authors' per-micro-batch mean / k equals ours only for equal counts (module docstring)."""
    tok, examples, model = setup
    obj = probsft.objective("nll")
    parts = [examples[0:2], examples[2:12]]
    sums, counts = [], []
    for part in parts:
        b = collate(part, tok.pad_token_id)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        sums.append(float(obj.loss(logits[:, :-1], b["labels"][:, 1:], reduction="sum")))
        counts.append(int((b["labels"][:, 1:] != -100).sum()))
    ours = accumulate_gradients(model, [collate(p, tok.pad_token_id) for p in parts], obj).loss
    model.zero_grad(set_to_none=True)
    authors = sum(s / n for s, n in zip(sums, counts)) / len(parts)
    assert ours == pytest.approx(sum(sums) / sum(counts), rel=1e-6)
    assert counts[0] != counts[1] and abs(authors - ours) > 1e-4


@pytest.mark.parametrize("spec", ["nll", "p", "p@p>=0.2"])
def test_fused_path_matches_logits_path(setup, spec):
    """cfg.fused: the last hidden states through probsft.fused_linear_loss give the same step."""
    pytest.importorskip("probsft.theory.fused")
    tok, examples, model = setup
    obj = probsft.objective(spec)
    batches = [collate(examples[:5], tok.pad_token_id), collate(examples[5:], tok.pad_token_id)]
    model.zero_grad(set_to_none=True)
    ref = accumulate_gradients(model, batches, obj)
    ref_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    got = accumulate_gradients(model, batches, obj, fused=True)
    assert (got.counted, got.valid) == (ref.counted, ref.valid)
    assert got.loss == pytest.approx(ref.loss, rel=1e-6)
    scale = max(float(r.abs().max()) for r in ref_grads)
    for g, r in zip(_grads(model), ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("spec", ["p", "nll@p>=0.2", "deft"])
def test_logged_nll_and_weight_shares(setup, spec):
    """log=True: train/nll is the NLL of the same response tokens, the W_f shares by p bucket are
    the direct sums of s_f(p)(1 - p)·1{counted}; the fused path logs the same numbers."""
    from probsft.validate.logstats import BUCKETS, P_EDGES

    tok, examples, model = setup
    obj = probsft.objective(spec)
    batches = [collate(examples[:5], tok.pad_token_id), collate(examples[5:], tok.pad_token_id)]
    model.zero_grad(set_to_none=True)
    assert accumulate_gradients(model, batches, obj).log is None
    model.zero_grad(set_to_none=True)
    got = accumulate_gradients(model, batches, obj, log=True).log
    nll, W, p = [], [], []
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            y = b["labels"][:, 1:]
            z = logits[:, :-1][y != -100].double()
            logq = torch.log_softmax(z, -1)
            lp = logq.gather(-1, y[y != -100][:, None])[:, 0]
            stats = {"sumsq": (logq.exp() ** 2).sum(-1)}
            s = obj.s_of_logp(lp, stats) * (obj.interval.indicator(lp.exp()) if obj.interval
                                            else 1.0)
            nll.append(-lp), W.append(s * (1 - lp.exp())), p.append(lp.exp())
    nll, W, p = torch.cat(nll), torch.cat(W), torch.cat(p)
    assert got["train/nll"] == pytest.approx(float(nll.mean()), rel=1e-5)
    edges = (0.0, *P_EDGES, 1.0 + 1e-12)
    for b, lo, hi in zip(BUCKETS, edges, edges[1:]):
        want = float(W[(p >= lo) & (p < hi)].sum() / W.sum())
        assert got[f"train/wshare_{b}"] == pytest.approx(want, abs=1e-5), b
    model.zero_grad(set_to_none=True)
    fused = accumulate_gradients(model, batches, obj, fused=True, log=True).log
    assert fused == pytest.approx(got, rel=1e-5, abs=1e-7)
