"""How much of the SFT data's supervision is wrong, and how? An estimate from the capability probe.

The user rarely knows the label-noise rate of their data; the probe (probsft.validate.probe) has the
base model's probability p_t of every answer target. The noise model is the continuum experiment's
(probsft.validate.data.add_label_noise), with both of its kinds at once: a record's whole answer is,
with probability R, another record's answer (each target then looks like a random id, probability
u = 1/(K - 1) for the K target ids the answers use); otherwise each target is, with probability E,
replaced by an id other than the right one (probability u (1 - p_t) of giving the observed id, by
the model's belief p_t that it is the right one), else the right one, which the model gives
probability p_t. Record i (answer tokens t = 1..n_i) then has likelihood

    L_i(R, E) = (1 - R) prod_t f_t(E)  +  R u^n_i,        f_t(E) = (1 - E) p_t + E u (1 - p_t)

and (R_hat, E_hat) maximise sum_i log L_i (EM: :func:`fit_mixture`). The posteriors say which
targets are wrong: rho_i = P(record i's whole answer is wrong), w_t = E u (1 - p_t) / f_t(E)
(target t wrong, within a record whose answer is not). Reported:

* ``token_rate``: the expected share of wrong targets, sum_i m_i / sum_i n_i with
  m_i = rho_i n_i + (1 - rho_i) sum_t w_t, and its 95% interval: Wilson's at the effective number
  of tokens N / deff, deff the design effect of the records as clusters (the ratio estimator's
  variance over the binomial one, at least 1: whole-answer noise makes a record's targets wrong
  together);
* ``record_share``: the expected share of records with at least one wrong target,
  mean_i [rho_i + (1 - rho_i)(1 - prod_t (1 - w_t))], with a Wilson interval on the records;
* ``whole_answer_share``: the share of the wrong targets that come as whole wrong answers,
  sum_i rho_i n_i / sum_i m_i: near 1 for answer noise, near 0 for token noise. With one answer
  token per record the two kinds are the same thing and the share says nothing.

The model's p_t stands in for the truth, so the estimate is as good as the model's calibration on
the clean targets. What it cannot see: a target the model gets confidently wrong by its own mistake
looks like noise (an overconfident model biases the estimate up: by ~0 for a strong model, by
several points in the middle of the continuum, where a wrong token also confuses the model about
the tokens after it; an underconfident one biases it down a little); a wrong answer the model
itself finds plausible looks clean (the experiment's ``plausible`` kind); and a model that does not
know the task (few confident tokens, :data:`MIN_CONFIDENT_SHARE`) cannot tell noise from its own
ignorance, so there the estimate is reported as uninformative. The clean/noisy threshold
:data:`CLEAN_BELOW` was set on the validation grid itself. Measured against known noise rates by
``python -m probsft.continuum.noise_check`` (docs/recommend.md). The verdict rules are the
constants below (:func:`verdict`).

    >>> est = estimate_noise(token_statistics(model, examples, pad_id), keep=answer_tokens)
    >>> est["token_rate"], est["interval"], est["kind"]
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENT = 0.5            # confident: max_j q_j above this (the probe's definition)
MIN_CONFIDENT_SHARE = 0.4  # fewer confident answer tokens: the model does not know the task
MAX_PLAUSIBLE = 0.5        # more wrong targets than this: the model disagrees with most of the data
CLEAN_BELOW = 0.075        # token rate below: clean (a middling model's own errors reach ~0.05)
MIN_ANSWER_TOKENS = 2.0    # fewer answer tokens per record (mean): the kinds cannot be told apart
ANSWER_ABOVE = 2 / 3       # whole-answer share at or above: the ``answer`` kind
TOKEN_BELOW = 1 / 3        # whole-answer share at or below: the ``token`` kind
KINDS = ("clean", "token", "answer", "cannot tell")
Z = 1.959963984540054      # 95% two-sided normal quantile


def confidently_wrong(st: dict):
    """Mask of the tokens of :func:`probsft.validate.probe.token_statistics` ``st`` whose argmax
    is not the target and has q above :data:`CONFIDENT`."""
    return ~st["top1"] & (st["maxq"] > CONFIDENT)


def wilson(successes: float, n: float, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a proportion, ``successes`` of ``n`` ((0, 1) when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    phat = successes / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(max(phat * (1 - phat), 0.0) / n + z * z / (4 * n * n))
    return (0.0 if phat <= 0 else max(0.0, centre - half),
            1.0 if phat >= 1 else min(1.0, centre + half))            # exact ends, no rounding


def posteriors(p, record, u: float, R: float, E: float):
    """(rho [I], w [N]) at (R, E): rho_i = R u^n_i / L_i, the chance record i's whole answer is
    wrong, and w_t = E u (1 - p_t) / f_t(E), the chance target t is wrong within a record whose
    answer is not (``record``: int [N] in 0..I-1, every record with a token)."""
    I = int(record.max()) + 1
    noisy = u * (1 - p)                          # a replaced target: another id than the right one
    f = (1 - E) * p + E * noisy                                                 # [N]
    log_whole = math.log(R) + np.bincount(record, minlength=I) * math.log(u)   # [I]
    log_not = math.log1p(-R) + np.bincount(record, np.log(f), I)               # [I]
    rho = 1 / (1 + np.exp(np.clip(log_not - log_whole, -700, 700)))
    return rho, E * noisy / f


def fit_mixture(p, record, u: float, tol: float = 1e-8, max_iter: int = 1000):
    """(R, E, rho, w) maximising sum_i log L_i(R, E) (module docstring) by EM from R = E = 0.1.

    ``p``: float64 [N] the model's probability of each target; ``record``: int [N] in 0..I-1;
    ``u``: the probability of a target under the noise. E-step: :func:`posteriors`; M-step:
    R = mean_i rho_i, E = sum_t (1 - rho_i) w_t / sum_t (1 - rho_i); both kept in
    [1e-12, 1 - 1e-12] (a rate at the boundary has no log).
    """
    p = np.maximum(np.asarray(p, dtype=np.float64), 1e-300)
    clip = lambda x: min(max(x, 1e-12), 1 - 1e-12)                             # noqa: E731
    R = E = 0.1
    for _ in range(max_iter):
        rho, w = posteriors(p, record, u, R, E)
        keep = (1 - rho)[record]                                               # [N]
        R_new = clip(float(rho.mean()))
        E_new = clip(float((keep * w).sum() / max(keep.sum(), 1e-12)))
        done = abs(R_new - R) + abs(E_new - E) < tol
        R, E = R_new, E_new
        if done:
            break
    return (R, E, *posteriors(p, record, u, R, E))


def _as_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def estimate_noise(st: dict, keep=None) -> dict:
    """The label-noise estimate (see the module docstring) from per-token probe statistics.

    ``st``: :func:`probsft.validate.probe.token_statistics`'s ``p``, ``maxq``, ``top1``, ``ids``
    and ``record`` [N_tokens]; ``keep``: a bool mask of the tokens to use (the answer tokens, not
    the format's end-of-response token). Returns a JSON-ready dict: ``token_rate`` and its
    ``interval``, ``record_share`` and its ``record_interval``, ``whole_answer_share``, the fitted
    ``R`` and ``E``, ``confident_share``, ``confident_wrong_share`` (confidently wrong among the
    confident tokens, the plain count the probe also reports, with its Wilson interval), the
    ``kind`` (:data:`KINDS`), ``informative`` and the ``reason``.
    """
    cols = {k: _as_numpy(st[k]) for k in ("p", "maxq", "top1", "ids", "record")}
    if keep is not None:
        keep = _as_numpy(keep).astype(bool)
        cols = {k: v[keep] for k, v in cols.items()}
    p = cols["p"].astype(np.float64)
    N = len(p)
    if N == 0:
        from probsft.errors import UserError

        raise UserError("noise estimate: no answer tokens to estimate from")
    K = max(2, len(np.unique(cols["ids"])))
    _, record = np.unique(cols["record"], return_inverse=True)        # records 0..I-1
    I = int(record.max()) + 1
    n_i = np.bincount(record, minlength=I)
    R, E, rho, w = fit_mixture(p, record, 1.0 / (K - 1))
    m_i = rho * n_i + (1 - rho) * np.bincount(record, w, I)           # expected wrong targets [I]
    rate = float(m_i.sum() / N)
    var = I / max(I - 1, 1) * float(np.sum((m_i - rate * n_i) ** 2)) / N ** 2  # records: clusters
    deff = max(1.0, var * N / (rate * (1 - rate))) if 0 < rate < 1 else 1.0  # design effect
    none_wrong = np.exp(np.bincount(record, np.log1p(-np.minimum(w, 1 - 1e-12)), I))
    record_share = float(np.mean(rho + (1 - rho) * (1 - none_wrong)))
    confident = cols["maxq"] > CONFIDENT
    wrong = confident & ~cols["top1"].astype(bool)
    n_conf, n_wrong = int(confident.sum()), int(wrong.sum())
    est = {"token_rate": rate, "interval": list(wilson(rate * N / deff, N / deff)),
           "record_share": record_share, "record_interval": list(wilson(record_share * I, I)),
           "whole_answer_share": float((rho * n_i).sum() / m_i.sum()) if m_i.sum() > 0 else None,
           "R": R, "E": E, "tokens": N, "records": I, "answer_tokens_per_record": N / I,
           "target_ids": K, "confident_share": n_conf / N,
           "confident_wrong_share": n_wrong / n_conf if n_conf else None,
           "confident_wrong_interval": list(wilson(n_wrong, n_conf))}
    est["kind"], est["informative"], est["reason"] = verdict(est)
    return est


def verdict(est: dict) -> tuple[str, bool, str]:
    """(kind, informative, reason): the measured supervision kind (:data:`KINDS`) the estimate
    points to, whether the probe can say anything about the noise here, and why, by the rules
    stated as this module's constants."""
    rate, whole = est["token_rate"], est["whole_answer_share"]
    if est["confident_share"] < MIN_CONFIDENT_SHARE:
        return "cannot tell", False, (
            f"uninformative: the model is confident (max q > {CONFIDENT}) on "
            f"{est['confident_share']:.0%} of the answer tokens (< {MIN_CONFIDENT_SHARE:.0%}), so "
            "it cannot tell noise from not knowing the task")
    if rate > MAX_PLAUSIBLE:
        return "cannot tell", False, (
            f"uninformative: the model disagrees with {rate:.0%} of the targets (> "
            f"{MAX_PLAUSIBLE:.0%}); more likely it does not know the task")
    if rate < CLEAN_BELOW:
        return "clean", True, f"{rate:.1%} < {CLEAN_BELOW:.1%}"
    if est["answer_tokens_per_record"] < MIN_ANSWER_TOKENS:
        return "cannot tell", True, (
            f"noisy, but with {est['answer_tokens_per_record']:.1f} answer tokens per record "
            "scattered wrong tokens and whole wrong answers look the same")
    share = f"{whole:.0%} of the wrong targets come as whole wrong answers"
    if whole >= ANSWER_ABOVE:
        return "answer", True, share
    if whole <= TOKEN_BELOW:
        return "token", True, share
    return "cannot tell", True, f"noisy, of mixed kind: {share}"
