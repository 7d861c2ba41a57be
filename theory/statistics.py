"""Extra inputs of adaptive objectives: per-token statistics of q, and probe-set parameters.

Most objectives are functions of p alone. An *adaptive* objective's f may also use symbols that are
not p; each such symbol is registered here, so an objective declares what it needs simply by the
symbols its expression contains (``Objective.token_stats``, ``Objective.probe_params``):

* a **token statistic** is a function of the model's whole next-token distribution q = softmax(z)
  at that token, computed from the current logits in the same pass as log p and *detached* (it is a
  constant in the gradient: s_f = -f'(p) p differentiates in p only). Shapes: z [N, V], lse [N] ->
  [N]. Neither needs the N x V probabilities:
      sumsq          sum_j q_j^2 = exp(logsumexp(2z) - 2 lse)    (DEFT's alpha, arXiv 2602.11424)
      entropy        H(q) = lse - sum_j q_j z_j
      entropy_top<K> H of q restricted to the K largest logits and renormalised (EAFT's
                     entropy, arXiv 2601.02151), one statistic per K, built from its name by
                     :func:`token_statistic` (K = 20 in LLaMA-Factory and axolotl)
  Each statistic also lists ``samples``: values across its range at which ``probsft describe``
  classifies an adaptive objective (probsft.theory.classes).
* a **probe parameter** is a number fixed once, before training, from the base model's target
  probabilities on the training data (``Objective.resolve(base_probs)``), like a Q<pct> threshold.
      alpha_probe   the alpha of ``alpha(auto)``, see :func:`alpha_from_probe`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
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
    samples: tuple = ()        # exact values across the statistic's range (for the class)
    from_exp: Callable | None = None
    """Optional: the same value from a pass's exponentials, ``from_exp(e [N, V], S [N]) -> [N]``
    with e = exp(z - max z) row-wise and S = sum_j e_j; the fused loss, which has e anyway, then
    reads e once instead of running ``torch_fn`` over z (tests/theory/test_statistics.py checks
    both agree)."""


def _sumsq_torch(z, lse):
    return torch.exp(torch.logsumexp(2 * z, dim=-1) - 2 * lse)


def _sumsq_from_exp(e, S):
    """sum_j q_j^2 = sum_j e_j^2 / S^2: one read of e (e <= 1 with a 1 in each finite row, so
    sum e^2 >= 1 does not underflow); vecdot's e·e temporary is the size of the rows passed, which
    the fused loss keeps to 32."""
    return torch.linalg.vecdot(e, e) / (S * S)


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


_TOPK_BLOCK = 128   # entries per block of topk_values's first stage


def topk_values(z, k):
    """The k largest values of z [..., V] along the last dimension, as ``torch.topk(z, k).values``
    (descending), exact, in two stages when V is large: the maxima of blocks of 128 consecutive
    entries (one read of z), then torch.topk over the entries of the k blocks with the largest
    maxima (and the last partial block). Exact: were one of the k largest values x in a block left
    out, the k chosen blocks' maxima would be k entries >= x. torch.topk straight over a vocab-major
    chunk (z a transposed view, as the fused loss's "col" layout makes) is ~6x slower than this."""
    V = z.shape[-1]
    blocks = V // _TOPK_BLOCK
    if blocks <= 4 * k:
        return torch.topk(z, k, dim=-1).values
    main = z[..., :blocks * _TOPK_BLOCK].unflatten(-1, (blocks, _TOPK_BLOCK))   # [..., nb, B]
    maxima = torch.amax(main, -1, out=torch.empty_like(main[..., 0]))  # strides as z's: one
    best = torch.topk(maxima, k, dim=-1).indices                  # read (~20x faster vocab-major)
    cand = main.gather(-2, best[..., None].expand(*best.shape, _TOPK_BLOCK)).flatten(-2)
    if blocks * _TOPK_BLOCK < V:
        cand = torch.cat([cand, z[..., blocks * _TOPK_BLOCK:]], dim=-1)          # [..., <= (k+1) B]
    return torch.topk(cand, k, dim=-1).values


def _topk_entropy_torch(z, lse, k):
    top = topk_values(z, min(k, z.shape[-1]))                         # [N, K]
    logq = top - torch.logsumexp(top, dim=-1, keepdim=True)           # renormalised over the K
    q = torch.exp(logq)
    return -torch.where(q > 0, q * logq, torch.zeros_like(q)).sum(-1)    # 0·log 0 = 0


def _topk_entropy_from_exp(e, S, k):
    """H_K from e = exp(z - max z): the K largest e are the K largest z, and q renormalised over
    them is e / sum(top e) (an e that underflows to 0 adds 0·log 0 = 0, as its q < 1e-37 would)."""
    top = topk_values(e, min(k, e.shape[-1]))                         # [N, K]
    total = top.sum(-1, keepdim=True)
    q = top / total
    logq = top.log() - total.log()
    return -torch.where(q > 0, q * logq, torch.zeros_like(q)).sum(-1)


def _topk_entropy_numpy(z, k):
    z = np.asarray(z, dtype=np.float64)
    k = min(k, z.shape[-1])
    top = np.take_along_axis(z, np.argsort(-z, axis=-1, kind="stable")[..., :k], axis=-1)
    with np.errstate(invalid="ignore"):
        logq = top - np_logsumexp(top, axis=-1, keepdims=True)
        q = np.exp(logq)
        return -np.sum(np.where(q > 0, q * logq, 0.0), axis=-1)


TOKEN_STATS: dict[str, TokenStatistic] = {s.name: s for s in [
    TokenStatistic("sumsq", sympy.Symbol("sumsq", positive=True),
                   "sum_j q_j^2 of the next-token distribution (1/V uniform ... 1 one-hot)",
                   _sumsq_torch, _sumsq_numpy,
                   (sympy.Rational(1, 1000), sympy.Rational(1, 4), sympy.Integer(1)),
                   _sumsq_from_exp),
    TokenStatistic("entropy", sympy.Symbol("entropy", nonnegative=True),
                   "entropy H(q) of the next-token distribution, nats",
                   _entropy_torch, _entropy_numpy,
                   (sympy.Rational(1, 100), sympy.Integer(1), sympy.Integer(5))),
]}
"""The fixed statistics; the top-K entropies are built by name (:func:`token_statistic`)."""

_TOP_K = re.compile(r"^entropy_top([1-9][0-9]*)$")


def topk_entropy(k: int) -> TokenStatistic:
    """The statistic H_K: entropy of softmax over the K largest logits (min(K, V) of them), the
    weight of EAFT (LLaMA-Factory ``_eaft_cross_entropy``: torch.topk(logits, k=20), entropy of
    the renormalised top-K probabilities). Range [0, ln K]; name ``entropy_top<K>``."""
    return token_statistic(f"entropy_top{int(k)}")


@functools.lru_cache(maxsize=None)
def _topk_statistic(k: int) -> TokenStatistic:
    name = f"entropy_top{k}"
    log_k = sympy.log(k)
    return TokenStatistic(name, sympy.Symbol(name, nonnegative=True),
                          f"entropy of q over the {k} largest logits, renormalised, nats (<= ln {k})",
                          functools.partial(_topk_entropy_torch, k=k),
                          functools.partial(_topk_entropy_numpy, k=k),
                          (log_k / 100, log_k / 2, log_k),
                          functools.partial(_topk_entropy_from_exp, k=k))


def token_statistic(name: str) -> TokenStatistic | None:
    """The registered statistic called ``name`` (TOKEN_STATS, or ``entropy_top<K>``), else None."""
    if name in TOKEN_STATS:
        return TOKEN_STATS[name]
    m = _TOP_K.match(name)
    return _topk_statistic(int(m.group(1))) if m else None


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
    samples: tuple = ()        # exact values across the parameter's range (for the class)


PROBE_PARAMS: dict[str, ProbeParameter] = {q.name: q for q in [
    ProbeParameter("alpha_probe", sympy.Symbol("alpha_probe", positive=True),
                   "alpha = mean p / (1 - mean p) of the base model on the data, in [0, 10]",
                   alpha_from_probe, (sympy.Rational(1, 10), sympy.Integer(1), sympy.Integer(10))),
]}


def token_stats_torch(names, z, lse) -> dict:
    """{name: [N] detached float tensor} for the statistics ``names`` of one chunk z [N, V]
    (any leading shape: z [..., V], lse [...] -> [...])."""
    with torch.no_grad():
        return {n: token_statistic(n).torch_fn(z, lse) for n in names}


def split_from_exp(names) -> tuple[tuple, tuple]:
    """(names computed from logits z, names computed from exponentials e): a statistic with a
    ``from_exp`` goes to the second group."""
    exp = tuple(n for n in names if token_statistic(n).from_exp is not None)
    return tuple(n for n in names if n not in exp), exp


def token_stats_from_exp(names, e, S) -> dict:
    """{name: [N] detached} from e = exp(z - max z) [N, V] and S = sum_j e_j [N], for statistics
    that have a ``from_exp`` (see :func:`split_from_exp`)."""
    with torch.no_grad():
        return {n: token_statistic(n).from_exp(e, S) for n in names}


def token_stats_numpy(names, z) -> dict:
    """{name: [...] float64} for the statistics ``names`` of logits z [..., V] (reference)."""
    return {n: token_statistic(n).numpy_fn(z) for n in names}


def token_stats_of_q(names, q) -> dict:
    """The same statistics from probabilities q [..., V] (the risk rates' priors); zeros allowed."""
    with np.errstate(divide="ignore"):
        return token_stats_numpy(names, np.log(np.asarray(q, dtype=np.float64)))
