"""The capability probe: its statistics equal a direct computation; the continuum placement."""

import pytest
import torch

import probsft
from probsft.validate.data import collate, tokenize_sft
from probsft.validate.probe import REGIONS, probe, region_of
from tests.validate.conftest import make_model


def test_probe_matches_direct_nll(tok, records):
    model = make_model(tok, spread=20.0)
    examples = tokenize_sft(records, tok, 64)
    stats = probe(model, tok, examples, batch_size=3)
    b = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        nll = probsft.objective("nll").loss(logits[:, :-1], b["labels"][:, 1:], reduction="none")
    mask = b["labels"][:, 1:] != -100
    p = torch.exp(-nll[mask]).double()
    assert stats["tokens"] == int(mask.sum()) == examples.n_response_tokens
    assert stats["mean_p"] == pytest.approx(float(p.mean()), rel=1e-5)
    assert stats["frac_p_gt_0.55"] == pytest.approx(float((p > 0.55).double().mean()))
    assert stats["quantiles"]["Q50"] == pytest.approx(float(p.median()), rel=1e-4) or \
        stats["quantiles"]["Q25"] <= float(p.median()) <= stats["quantiles"]["Q75"]
    assert stats["region"] == region_of(stats["mean_p"]).name
    assert probe(model, tok, records)["mean_p"] == pytest.approx(stats["mean_p"], rel=1e-6)
    # the eos / answer split: the same p, partitioned by the target id
    y = b["labels"][:, 1:][mask]
    eos = y == tok.eos_token_id
    assert stats["eos_tokens"] == int(eos.sum()) > 0
    assert stats["answer_mean_p"] == pytest.approx(float(p[~eos].mean()), rel=1e-5)
    assert stats["eos_mean_p"] == pytest.approx(float(p[eos].mean()), rel=1e-5)
    assert stats["placement"] == "all" and stats["placement_mean_p"] == stats["mean_p"]
    by_answer = probe(model, tok, examples, batch_size=3, placement="answer")
    assert by_answer["placement_mean_p"] == by_answer["answer_mean_p"]
    assert by_answer["region"] == region_of(by_answer["answer_mean_p"]).name
    # the full-distribution statistics: sum q^2 and the p histogram, directly
    q = torch.softmax(logits[:, :-1][mask].double(), -1)
    assert stats["mean_sumsq"] == pytest.approx(float((q * q).sum(-1).mean()), rel=1e-5)
    top1 = q.argmax(-1) == y
    assert stats["top1_accuracy"] == pytest.approx(float(top1.double().mean()))
    wrong = ~top1 & (q.max(-1).values > 0.5)
    assert stats["frac_confident_wrong"] == pytest.approx(float(wrong.double().mean()))
    hist = torch.histc(p, bins=10, min=0, max=1) / len(p)
    assert list(stats["p_histogram"].values()) == pytest.approx(hist.tolist(), abs=1e-9)
    with pytest.raises(probsft.UserError, match="placement"):
        probe(model, tok, examples, placement="eos")


@pytest.mark.parametrize("mean_p, region, winner", [
    (0.01, "model-weak", "nll"), (0.07, "model-weak", "nll"), (0.5, "model-intermediate", None),
    (0.8, "model-strong", "p"), (1.0, "model-strong", "p")])
def test_reference_points_land_in_their_regions(mean_p, region, winner):
    r = region_of(mean_p)
    assert r.name == region
    assert winner is None or r.expected_winners[0] == winner
    for spec in r.expected_winners:
        probsft.objective(spec)                      # every expected winner is a valid spec
    assert REGIONS[0].lo == 0 and all(a.hi == b.lo for a, b in zip(REGIONS, REGIONS[1:]))
