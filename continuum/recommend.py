"""Which objective for this model and this data? A dry run before any GPU time.

``recommend(model, data)`` probes the base model on a bounded sample of the data (teacher forcing,
probsft.validate.probe: mean target p, answer-token p, the p histogram, entropy, sum_j q_j^2), places
the pair on the capability continuum, and ranks the candidate objectives by

1. **the measured curve** (probsft.continuum.curve: the registered grids' cells, one row per
   position x supervision x optimizer x objective, Δ = exact match(objective) − exact match(NLL)
   in points with its 95% CI): per objective, Δ and the share of positions where it was within the
   tie band of that position's best, smoothed over the measured positions with a Gaussian kernel
   in the probe's answer p (probsft.continuum.rule.dose_response) whose width was chosen by
   leave-one-position-out once, when the curve was built. On the shipped curve the widths are
   wide (0.1 for ``band`` on five grids, ∞ on fewer): Δ differs more between neighbouring
   positions than the noise of a cell, because every position is a different task
   (docs/recommend.md);
2. **the first-order theory** otherwise (paper Cor. E.6, probsft.theory.risk): the expected
   risk-reduction rate E_ỹ[Ṙ_f] = (1 − E)·clean + E·noisy on the model's own next-token
   distributions q of the sampled tokens (the data's targets taken as the true tokens, noisy labels
   uniform over the others), and E*, the noise rate above which f reduces risk faster than NLL.

The answer is given for every noise kind the curve measured (``by_supervision``), since the user
rarely knows it, beside the probe's estimate of the data's label noise (``noise_estimate``,
probsft.validate.noise: the share of wrong targets with its interval, and the kind it points to,
``points_to``, or none where the probe cannot tell).

The rule (probsft.continuum.rule.decide, also what its hit_rate scores): with a measured curve, ``band`` (default) takes the objective of largest smoothed in-band share (ties: the larger
Δ); ``delta`` (the rule before) the objective of largest smoothed Δ if Δ exceeds the tie margin
(2 points), else NLL. Without them: the candidate of largest first-order rate at the assumed noise.
Confidence: *high* when measured, the nearest measured position is within 0.1 of the probe's p and
the CI of Δ excludes 0 (or the pick is NLL); *medium* when measured otherwise; *low* from theory
alone.

    probsft recommend --model models/backbone --data data/validate/letter_jumble/train.jsonl
    >>> rec = probsft.recommend("models/backbone", "train.jsonl", noise=0.1)
    >>> rec["recommendation"]["objective"], rec["why"]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import probsft
from probsft.continuum.cells import in_band_counts
from probsft.continuum.recommend_text import explain
from probsft.continuum.rule import RULE, decide, dose_response, json_width, rule_of
from probsft.errors import UserError

# The continuum grid's objectives, then the ecosystem's ones that the first-order theory can rank at
# the scale a user would train them: EAFT as LLaMA-Factory ships it (entropy / 3, near NLL's scale;
# axolotl's unnormalised eaft(1,20,1) would win any first-order ranking by its 3x step alone) and
# CHORD-phi. ASFT needs the base model's logits beside the model's (its KL anchor vanishes at t = 0,
# where the rate is DFT's). The measured curve has none of the ecosystem's objectives yet.
CANDIDATES = ("nll", "alpha(0.1)", "alpha(0.5)", "p", "alpha(2)", "alpha(10)", "nll@p>=0.2", "dft",
              "deft", "alpha(auto)", "eaft", "chord")
RATE_ELEMENTS = 1 << 24       # q values kept for the first-order rates: tokens x V <= 16M float32
PLACEMENT = "answer"          # as the continuum experiment: answer tokens, not the eos format token

# ---------------------------------------------------------------------------------------------
# the probe and the theory


def sample_examples(records, tokenizer, sample_tokens: int, max_length: int, seed: int = 0):
    """Tokenised examples, in a seeded random order, until ``sample_tokens`` response tokens."""
    from probsft.validate.data import SFTExamples, tokenize_sft

    order = np.random.default_rng(seed).permutation(len(records))
    out = SFTExamples()
    for start in range(0, len(order), 64):
        part = tokenize_sft([records[i] for i in order[start:start + 64]], tokenizer, max_length)
        for ex in part:
            if out.n_response_tokens >= sample_tokens:
                return out
            out.append(ex)
            out.n_response_tokens += sum(1 for y in ex["labels"][1:] if y != -100)
        out.n_truncated += part.n_truncated
    return out


class _RateTokens:
    """Keeps q [n, V] of a seeded uniform subsample of the probed tokens, each token with chance
    max_tokens / total_tokens (at most max_tokens in all), for the first-order rates."""

    def __init__(self, max_tokens: int, total_tokens: int, seed: int = 0):
        self.max_tokens, self.q, self.y = max_tokens, [], []
        self.rate = min(1.0, max_tokens / max(total_tokens, 1))
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, logq, y):
        room = self.max_tokens - sum(len(t) for t in self.y)
        pick = (torch.rand(len(y), generator=self.gen) < self.rate).nonzero()[:room, 0]
        if len(pick):
            pick = pick.to(logq.device)
            self.q.append(logq[pick].exp().float().cpu())
            self.y.append(y[pick].cpu())

    def arrays(self):
        if not self.y:
            raise UserError("recommend: no response tokens to compute the first-order rates on")
        return torch.cat(self.q).numpy(), torch.cat(self.y).numpy()


def first_order(candidates, q, y_star) -> dict[str, tuple[float, float]]:
    """{spec: (mean clean rate, mean noisy rate)} on contexts q [n, V] with true tokens y_star [n]
    (probsft.theory.risk.clean_and_noisy_rates; chunks keep the float64 temporaries small)."""
    from probsft.theory.risk import clean_and_noisy_rates

    chunk = max(1, (1 << 22) // q.shape[1])
    out = {}
    for obj in candidates:
        c_sum = n_sum = 0.0
        for lo in range(0, len(y_star), chunk):
            qc = q[lo:lo + chunk].astype(np.float64)
            qc /= qc.sum(-1, keepdims=True)
            c, n = clean_and_noisy_rates(obj, qc, y_star[lo:lo + chunk])
            c_sum, n_sum = c_sum + float(c.sum()), n_sum + float(n.sum())
        out[obj.spec] = (c_sum / len(y_star), n_sum / len(y_star))
    return out


def _klass(obj) -> str:
    """The paper's class of ``obj`` (probsft.theory.classes.paper_class: prior-averse,
    prior-leaning or adaptive), as `probsft describe` gives it."""
    from probsft.theory.classes import paper_class

    return paper_class(obj)[0]


def as_curve(curve):
    """A :class:`probsft.continuum.curve.Curve` from what a caller passes: a Curve; None, the
    shipped curve (probsft.continuum.curve.DEFAULT); a shipped curve's name
    (probsft.continuum.curve.SHIPPED: "measured", "dial"); a curve file (.json); one or several
    ``paired.csv`` files, summarised now (slower: the width choice runs); False: none (theory only)."""
    from probsft.continuum import curve as cv

    if curve is False:
        return None
    if curve is None:
        return cv.load()
    if isinstance(curve, cv.Curve):
        return curve
    paths = [curve] if isinstance(curve, (str, Path)) else list(curve)
    if len(paths) == 1 and str(paths[0]) in cv.SHIPPED:
        return cv.load(cv.SHIPPED[str(paths[0])])
    if len(paths) == 1 and Path(paths[0]).suffix == ".json":
        return cv.load(paths[0])
    return cv.build(paths)


def recommend(model, data, noise: float = 0.0, sample_tokens: int = 100_000, device: str = "auto",
              supervision: str = "token", optimizer: str = "adamw",
              tokenizer=None, batch_size: int = 64, max_length: int = 1024,
              rate_tokens: int = 4096, progress: bool = True, seed: int = 0,
              rule: str | None = None, curve=None) -> dict:
    """Recommend an objective for fine-tuning ``model`` on ``data`` (see the module docstring).

    Args:
        model: a causal LM folder / hub name, or a loaded model (then pass ``tokenizer``).
        data: SFT JSONL path or a list of records (prompt/response or messages).
        noise: the assumed label-noise rate E in [0, 1) (0: clean supervision).
        sample_tokens: response tokens to probe (a seeded random sample of examples).
        curve: the measured curve (:func:`as_curve`): default the shipped one, built by
            `probsft reproduce` from the registered grids (probsft.continuum.grids.CURVE); a curve
            file or Curve; paired.csv file(s); False: the theory only.
        rule: how the measured curve picks (probsft.continuum.rule.RULES; default ``band``).
        supervision: the noise kind to look up in the curve when noise > 0 (clean when E = 0).
        rate_tokens: probed tokens (a seeded uniform subsample) on which the first-order rates
            are computed (also capped so that tokens x V <= 2^24).
    Returns:
        a JSON-ready dict: probe statistics, region, each candidate's class, rates and E* against
        NLL (and measured Δ), the ranking, the recommendation and the ``why`` lines.
    """
    from probsft.theory.risk import crossing
    from probsft.validate.data import read_jsonl
    from probsft.validate.probe import probe

    start = time.perf_counter()
    rule_of(rule)                                     # a bad rule or curve fails before the probe
    measured_curve = as_curve(curve)
    if not 0 <= noise < 1:
        raise UserError(f"noise must lie in [0, 1), got {noise}")
    if sample_tokens < 1 or rate_tokens < 1:
        raise UserError("sample_tokens and rate_tokens must be >= 1")
    label = model if isinstance(model, (str, Path)) else type(model).__name__
    if isinstance(model, (str, Path)):
        from probsft.validate.train import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(str(model))
    if tokenizer is None:
        raise UserError("recommend: pass the tokenizer together with a loaded model")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is available")
    model.to("cuda" if cuda else "cpu")
    records = read_jsonl(data) if isinstance(data, (str, Path)) else list(data)
    if not records:
        raise UserError("recommend: the data has no records")
    examples = sample_examples(records, tokenizer, sample_tokens, max_length, seed)
    examples.sort(key=lambda e: len(e["input_ids"]))       # little padding per batch: faster
    V = model.get_output_embeddings().weight.shape[0]
    keep = _RateTokens(max(1, min(rate_tokens, RATE_ELEMENTS // V)), examples.n_response_tokens,
                       seed)
    stats = probe(model, tokenizer, examples, batch_size, max_length, PLACEMENT, on_batch=keep,
                  progress=progress)
    q, y_star = keep.arrays()
    x = stats["placement_mean_p"]
    alpha_auto = probsft.objective("alpha(auto)").resolve([stats["mean_p"]])  # rule: mean p

    objs = {spec: alpha_auto if spec == "alpha(auto)" else probsft.objective(spec)
            for spec in CANDIDATES}
    rates = first_order(dict.fromkeys(objs.values()), q, y_star)
    sup = "clean" if noise == 0 else supervision
    cells = list(measured_curve.cells) if measured_curve else []
    width = measured_curve.width(rule or RULE) if cells else None
    measured = dose_response(cells, x, sup, optimizer, bandwidth=width) if cells else {}
    c_nll, n_nll = rates["nll"]
    cands = []
    for spec, obj in objs.items():
        c, n = rates[obj.spec]
        cross = crossing(c - c_nll, n - n_nll, obj.spec, "nll") if spec != "nll" else None
        cands.append({
            "spec": spec, "resolved": obj.spec, "label": obj.label, "class": _klass(obj),
            "rate_clean": c, "rate_noisy": n, "rate_at_noise": (1 - noise) * c + noise * n,
            "e_star_vs_nll": None if cross is None else cross.e_star,
            "vs_nll": None if cross is None else cross.statement(),
            "measured": measured.get(probsft.objective(spec).spec, measured.get(obj.spec))})
    key = (lambda r: (r["measured"] is not None, r["measured"]["delta"] if r["measured"] else
                      r["rate_at_noise"])) if measured else (lambda r: r["rate_at_noise"])
    cands.sort(key=key, reverse=True)
    theory_rates = {r["resolved"]: r["rate_at_noise"] for r in cands}
    position = measured_curve.position if measured else None
    rec = pick(measured, theory_rates, cells, sup, optimizer, rule, position)
    # the answer for every noise kind the curve measured, since the kind is rarely known
    by_kind = {k: pick(dose_response(cells, x, k, optimizer, bandwidth=width), None, cells, k,
                       optimizer, rule, position)["objective"]
               for k in dict.fromkeys(c["supervision"] for c in cells if c["optimizer"] == optimizer)}
    chosen = next(r for r in cands if rec["objective"] in (r["spec"], r["resolved"]))
    noise_est = stats["noise_estimate"]                    # probsft.validate.noise, answer tokens
    noise_est = {**noise_est,
                 "points_to": noise_est["kind"] if noise_est["kind"] in by_kind else None}
    out = {
        "model": str(label), "data": str(data) if isinstance(data, (str, Path)) else "records",
        "noise": noise, "supervision": sup, "optimizer": optimizer,
        "curve": ", ".join(measured_curve.grids) if measured_curve else None,
        "rule": rule or RULE, "bandwidth": json_width(width),
        "probe": {k: stats[k] for k in ("examples", "tokens", "eos_tokens", "mean_p", "answer_mean_p",
                                        "eos_mean_p", "placement_mean_p", "frac_p_gt_0.55",
                                        "mean_entropy", "mean_sumsq", "top1_accuracy",
                                        "frac_confident_wrong", "p_histogram", "quantiles",
                                        "region", "reference", "expected_winners", "why")},
        "rate_tokens": int(len(y_star)), "alpha_auto": alpha_auto.spec,
        "candidates": cands, "ranking": [r["spec"] for r in cands],
        "recommendation": {**rec, "objective": chosen["spec"], "resolved": chosen["resolved"]},
        "in_band": in_band_counts(cells, sup, optimizer) if cells else {},
        "position_test": position, "by_supervision": by_kind, "noise_estimate": noise_est,
        "seconds": round(time.perf_counter() - start, 2)}
    out["measured_curve"] = measured_curve_samples(cells, sup, optimizer, width, x) if cells else None
    out["why"] = explain(out)
    return out


CURVE_P = tuple(round(0.05 * i, 2) for i in range(1, 20))     # p at which the curve is sampled


def measured_curve_samples(cells, supervision: str, optimizer: str, width: float, x: float) -> dict:
    """The smoothed Δ of every measured objective along p (:data:`CURVE_P`) for one noise kind and
    optimizer, at the width the curve was built with, and where the probe's p sits: what the text
    plot and ``--plot`` draw ({"p", "probe_p", "delta": {spec: [Δ at each p]}})."""
    rows = [dose_response(cells, p, supervision, optimizer, bandwidth=width) for p in CURVE_P]
    specs = sorted({s for r in rows for s in r})
    return {"p": list(CURVE_P), "probe_p": x, "supervision": supervision, "optimizer": optimizer,
            "delta": {s: [r[s]["delta"] if s in r else None for r in rows] for s in specs}}


def pick(measured: dict, rates, cells, supervision: str, optimizer: str, rule, position) -> dict:
    """:func:`probsft.continuum.rule.decide`, or, where the curve's position test found that the
    probe's position does not pick better (probsft.continuum.position), the position-blind
    policy's objective for this noise kind and optimizer."""
    rec = decide(measured, rates, rule=rule)
    if position and not position["matters"] and (rule or RULE) == position["rule"]:
        from probsft.continuum.position import blind_answer

        blind = blind_answer(position, cells, supervision, optimizer)
        if blind in measured:
            m = measured[blind]
            rec = {**rec, "objective": blind, "expected_gain": m["delta"],
                   "gain_ci": (m["ci_low"], m["ci_high"]), "confidence": "medium",
                   "position_blind": position["position_blind"]}
    return rec
