"""Extra inputs of adaptive objectives: per-token statistics of q, and probe-set parameters.

Most objectives are functions of p alone. An *adaptive* objective's f may also use symbols that are
not p; each such symbol is registered here, so an objective declares what it needs simply by the
symbols its expression contains (``Objective.token_stats``, ``Objective.probe_params``):

* a **token statistic** is a function of the model's whole next-token distribution q = softmax(z)
  at that token, computed from the current logits in the same pass as log p and *detached* (it is a
  constant in the gradient: s_f = -f'(p) p differentiates in p only). Shapes: z [N, V], lse [N] ->
  [N]. Neither needs the N x V probabilities:
      sumsq    sum_j q_j^2 = exp(logsumexp(2z) - 2 lse)          (DEFT's alpha, arXiv 2602.11424)
      entropy  H(q) = lse - sum_j q_j z_j
* a **probe parameter** is a number fixed once, before training, from the base model's target
  probabilities on the training data (``Objective.resolve(base_probs)``), like a Q<pct> threshold.
      alpha_probe   the alpha of ``alpha(auto)``, see :func:`alpha_from_probe`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import sympy
import torch
from scipy.special import logsumexp as np_logsumexp

ALPHA_AUTO_MAX = 10.0     # the paper's largest alpha (GeneralFamily-10); W_f's peak then at 0.91


@dataclasses.dataclass(frozen=True)
class TokenStatistic:
    """A detached per-token statistic of q: ``torch_fn(z [N, V], lse [N]) -> [N]`` and a float64
    numpy reference ``numpy_fn(z [..., V]) -> [...]``."""

    name: str
    symbol: sympy.Symbol
    doc: str
    torch_fn: Callable
    numpy_fn: Callable


def _sumsq_torch(z, lse):
    return torch.exp(torch.logsumexp(2 * z, dim=-1) - 2 * lse)


def _sumsq_numpy(z):
    z = np.asarray(z, dtype=np.float64)
    return np.exp(np_logsumexp(2 * z, axis=-1) - 2 * np_logsumexp(z, axis=-1))


def _entropy_torch(z, lse):
    q = torch.exp(z - lse[..., None])                                 # [N, V], one chunk at a time
    return lse - torch.where(q > 0, q * z, torch.zeros_like(z)).sum(-1)   # 0·log 0 = 0


def _entropy_numpy(z):
    z = np.asarray(z, dtype=np.float64)
    lse = np_logsumexp(z, axis=-1)
    q = np.exp(z - lse[..., None])
    with np.errstate(invalid="ignore"):
        return lse - np.sum(np.where(q > 0, q * z, 0.0), axis=-1)        # 0·log 0 = 0


TOKEN_STATS: dict[str, TokenStatistic] = {s.name: s for s in [
    TokenStatistic("sumsq", sympy.Symbol("sumsq", positive=True),
                   "sum_j q_j^2 of the next-token distribution (1/V uniform ... 1 one-hot)",
                   _sumsq_torch, _sumsq_numpy),
    TokenStatistic("entropy", sympy.Symbol("entropy", nonnegative=True),
                   "entropy H(q) of the next-token distribution, nats",
                   _entropy_torch, _entropy_numpy),
]}


def alpha_from_probe(base_probs) -> float:
    """alpha(auto): the alpha whose gradient weight peaks at the data's mean target probability.

    Rule: with p̄ = mean_t p_t of the base model on the training targets (paper Eq. 5, the continuum
    coordinate), alpha = p̄ / (1 - p̄), clipped to [0, 10] and rounded to 3 decimals.
    Rationale: W_f(p) = p^alpha (1 - p) of f = (1 - p^alpha)/alpha peaks at p = alpha/(1 + alpha)
    (Lemma 3.1, Prop. 3.2), so this alpha puts the largest logit-gradient weight where the data's
    typical target is. It moves the objective along the continuum the way the theory orders it:
    model-weak data (p̄ -> 0) gives alpha -> 0, i.e. NLL (prior-averse); p̄ = 1/2 gives -p; model-strong
    data gives a large, prior-leaning alpha (p̄ = 0.8 -> 4), capped at the paper's largest, 10.
    Fixed once before training, so the run is an ordinary fixed-alpha run (its config saves alpha).
    """
    probs = np.asarray(base_probs, dtype=float).ravel()
    if probs.size == 0 or not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        from probsft.errors import SpecError

        raise SpecError("alpha(auto) needs a non-empty array of base-model probabilities in [0, 1]")
    mean_p = float(probs.mean())
    alpha = ALPHA_AUTO_MAX if mean_p >= ALPHA_AUTO_MAX / (1 + ALPHA_AUTO_MAX) else mean_p / (1 - mean_p)
    return round(min(max(alpha, 0.0), ALPHA_AUTO_MAX), 3)


@dataclasses.dataclass(frozen=True)
class ProbeParameter:
    """A parameter set once from base-model target probabilities: ``rule(probs [N]) -> float``."""

    name: str
    symbol: sympy.Symbol
    doc: str
    rule: Callable


PROBE_PARAMS: dict[str, ProbeParameter] = {q.name: q for q in [
    ProbeParameter("alpha_probe", sympy.Symbol("alpha_probe", positive=True),
                   "alpha = mean p / (1 - mean p) of the base model on the data, in [0, 10]",
                   alpha_from_probe),
]}


def token_stats_torch(names, z, lse) -> dict:
    """{name: [N] detached float tensor} for the statistics ``names`` of one chunk z [N, V]
    (any leading shape: z [..., V], lse [...] -> [...])."""
    with torch.no_grad():
        return {n: TOKEN_STATS[n].torch_fn(z, lse) for n in names}


def token_stats_numpy(names, z) -> dict:
    """{name: [...] float64} for the statistics ``names`` of logits z [..., V] (reference)."""
    return {n: TOKEN_STATS[n].numpy_fn(z) for n in names}


def token_stats_of_q(names, q) -> dict:
    """The same statistics from probabilities q [..., V] (the risk rates' priors); zeros allowed."""
    with np.errstate(divide="ignore"):
        return token_stats_numpy(names, np.log(np.asarray(q, dtype=np.float64)))
