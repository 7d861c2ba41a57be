"""The probe's label-noise estimate on per-token arrays whose truth is known: a sure model with
flipped targets (scattered or whole answers), an ignorant model, the EM fit against a direct
maximisation of the likelihood, Wilson's interval, and the probe reporting the estimate."""

import math

import numpy as np
import pytest

import probsft
from probsft.validate import noise
from probsft.validate.noise import estimate_noise, fit_mixture, wilson

K = 27                                   # target ids: 26 letters + one more, as the dial's answers
TOKENS_PER_RECORD = 6


def _tokens(wrong, records, p_right=0.99, p_wrong=1e-4, seed=0, maxq_wrong=None):
    """Per-token statistics of a model that gives each right target ``p_right`` and each wrong one
    ``p_wrong`` (its argmax is then another id with q = ``maxq_wrong``, default 1 - p_wrong)."""
    rng = np.random.default_rng(seed)
    p = np.where(wrong, p_wrong, p_right)
    maxq = np.where(wrong, 1 - p_wrong if maxq_wrong is None else maxq_wrong, p_right)
    ids = rng.integers(0, K, len(wrong))
    ids[:K] = np.arange(K)                          # every id occurs
    return {"p": p, "maxq": maxq, "top1": ~wrong, "ids": ids, "record": records}


def _records(n_records, per=TOKENS_PER_RECORD):
    return np.repeat(np.arange(n_records), per)


def test_sure_model_with_scattered_flips_finds_the_rate_and_the_token_kind():
    rng = np.random.default_rng(1)
    rec = _records(2000)
    wrong = rng.random(len(rec)) < 0.2
    est = estimate_noise(_tokens(wrong, rec))
    truth = wrong.mean()
    assert est["token_rate"] == pytest.approx(truth, abs=0.003)
    lo, hi = est["interval"]
    assert lo <= truth <= hi and hi - lo < 0.02
    # a record is touched when any of its 6 targets is wrong: 1 - 0.8^6 = 0.74
    touched = np.bincount(rec, wrong) > 0
    assert est["record_share"] == pytest.approx(touched.mean(), abs=0.01)
    assert est["record_interval"][0] <= touched.mean() <= est["record_interval"][1]
    assert est["whole_answer_share"] < 0.05 and est["R"] < 0.01
    assert est["kind"] == "token" and est["informative"]
    assert est["confident_share"] == 1.0
    assert est["confident_wrong_share"] == pytest.approx(truth)


def test_whole_answer_flips_point_to_the_answer_kind_with_a_wider_interval():
    rng = np.random.default_rng(2)
    rec = _records(1000)
    wrong = (rng.random(1000) < 0.2)[rec]
    wrong[rng.random(len(rec)) < 1 / K] = False     # a swapped answer shares a letter by chance
    est = estimate_noise(_tokens(wrong, rec))
    touched = (np.bincount(rec, wrong) > 0).mean()
    assert est["token_rate"] == pytest.approx(wrong.mean(), abs=0.01)
    assert est["record_share"] == pytest.approx(touched, abs=0.01)
    assert est["R"] == pytest.approx(touched, abs=0.01) and est["whole_answer_share"] > 0.9
    assert est["kind"] == "answer"
    # the targets come wrong six at a time: the interval is wider than the scattered case's
    lo, hi = est["interval"]
    assert lo <= wrong.mean() <= hi
    scattered = estimate_noise(_tokens(rng.random(len(rec)) < wrong.mean(), rec))
    assert hi - lo > 1.8 * (scattered["interval"][1] - scattered["interval"][0])


def test_clean_data_and_the_eos_mask():
    rec = _records(300)
    wrong = np.zeros(len(rec), bool)
    st = _tokens(wrong, rec)
    est = estimate_noise(st)
    assert est["token_rate"] < 1e-3 and est["kind"] == "clean" and est["informative"]
    assert est["interval"][0] == 0.0 and 0 < est["interval"][1] < 0.005
    # keep drops tokens: a wrong token outside the mask is not seen
    st["p"] = st["p"].copy()
    st["p"][::TOKENS_PER_RECORD] = 1e-6
    st["top1"] = st["top1"].copy()
    st["top1"][::TOKENS_PER_RECORD] = False
    keep = np.ones(len(rec), bool)
    keep[::TOKENS_PER_RECORD] = False
    assert estimate_noise(st, keep=keep)["kind"] == "clean"
    assert estimate_noise(st)["token_rate"] == pytest.approx(1 / TOKENS_PER_RECORD, abs=0.01)
    with pytest.raises(probsft.UserError, match="no answer tokens"):
        estimate_noise(st, keep=np.zeros(len(rec), bool))


def test_an_ignorant_model_is_uninformative():
    rng = np.random.default_rng(3)
    rec = _records(500)
    wrong = rng.random(len(rec)) < 0.2
    # near-uniform q: p ~ 1/K for every target, max q far below 0.5
    st = _tokens(wrong, rec, p_right=1 / K, p_wrong=1 / K, maxq_wrong=1.5 / K)
    st["maxq"] = np.full(len(rec), 1.5 / K)
    est = estimate_noise(st)
    assert est["kind"] == "cannot tell" and not est["informative"]
    assert "uninformative" in est["reason"] and est["confident_share"] == 0.0
    # a confident model that disagrees with most targets (it does not know the task)
    mostly = estimate_noise(_tokens(rng.random(len(rec)) < 0.7, rec))
    assert mostly["token_rate"] > noise.MAX_PLAUSIBLE and not mostly["informative"]


def test_one_token_answers_cannot_tell_the_kind():
    rng = np.random.default_rng(4)
    rec = np.arange(3000)
    est = estimate_noise(_tokens(rng.random(3000) < 0.2, rec))
    assert est["token_rate"] == pytest.approx(0.2, abs=0.02)
    assert est["kind"] == "cannot tell" and est["informative"] and "look the same" in est["reason"]


def test_em_maximises_the_likelihood():
    """The EM fit against a grid search of sum_i log L_i(R, E) on a middling model's p."""
    rng = np.random.default_rng(5)
    rec = _records(200, per=4)
    p = rng.beta(2, 1, len(rec))
    p[(rng.random(200) < 0.15)[rec]] = 1e-3                   # whole answers
    p[rng.random(len(rec)) < 0.1] = 1e-3                      # and scattered tokens
    u = 1 / (K - 1)

    def loglik(R, E):
        f = (1 - E) * p + E * u * (1 - p)
        log_not = np.log1p(-R) + np.bincount(rec, np.log(f))
        log_whole = np.log(R) + 4 * np.log(u)
        return float(np.logaddexp(log_not, log_whole).sum())

    R, E, rho, w = fit_mixture(p, rec, u)
    grid = [(r, e) for r in np.linspace(0.01, 0.5, 50) for e in np.linspace(0.01, 0.5, 50)]
    best = max(grid, key=lambda x: loglik(*x))
    assert loglik(R, E) >= loglik(*best) - 1e-6
    assert abs(R - best[0]) < 0.02 and abs(E - best[1]) < 0.02
    assert rho.shape == (200,) and w.shape == p.shape and 0 <= w.min() and w.max() <= 1


def test_wilson_interval_known_values():
    # Wilson (1927): 0 of 10 -> (0, 0.2775); 5 of 10 -> (0.2366, 0.7634)
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson(0, 0) == (0.0, 1.0)
    assert noise.Z == pytest.approx(1.959963984540054)
    assert math.isclose(wilson(10, 10)[1], 1.0)


def test_the_probe_reports_the_estimate_on_answer_tokens(tok, records):
    from probsft.validate.data import tokenize_sft
    from probsft.validate.probe import probe, token_statistics
    from tests.validate.conftest import make_model

    model = make_model(tok, spread=20.0)
    examples = tokenize_sft(records, tok, 64)
    st = token_statistics(model, examples, tok.pad_token_id, batch_size=5)
    # record ids follow the examples: each example's supervised tokens, in order
    assert st["record"].tolist() == [i for i, e in enumerate(examples)
                                     for y in e["labels"][1:] if y != -100]
    stats = probe(model, tok, examples, batch_size=3)
    want = estimate_noise(st, keep=st["ids"] != tok.eos_token_id)
    got = stats["noise_estimate"]
    assert got["token_rate"] == pytest.approx(want["token_rate"], rel=1e-6)
    assert got["tokens"] == stats["tokens"] - stats["eos_tokens"] and got["kind"] in noise.KINDS
