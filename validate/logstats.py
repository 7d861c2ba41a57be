"""What a user can read next to an objective's loss: the NLL of the same tokens, and where the
gradient weight goes.

Different objectives' losses live on different scales (−p is in [0, 1], NLL unbounded, DFT's
-sg(p) log p is ~100x smaller than NLL on confident tokens), so the runner and the HF/TRL hooks log,
beside ``train/loss``,

    train/nll              mean −log p over the same response tokens (label != ignore_index)
    train/wshare_p<0.1 ... share of the logit-gradient weight W_f(p) = s_f(p)(1 − p)·1{counted}
                           (Lemma 3.1) carried by tokens in each p bucket; the shares sum to 1

:func:`log_terms` turns per-token tensors the loss already computed (log p, s_f·1{counted}, the valid
mask) into a small tensor of sums that stays on the device and adds across micro-batches and ranks;
:func:`summarise` reads it once, when a step is logged, so the loss path gains no host sync.
"""

from __future__ import annotations

import torch

P_EDGES = (0.1, 0.5, 0.9)       # p buckets [0, 0.1), [0.1, 0.5), [0.5, 0.9), [0.9, 1]
BUCKETS = ("p<0.1", "p0.1-0.5", "p0.5-0.9", "p>=0.9")
KEYS = ("train/nll", *(f"train/wshare_{b}" for b in BUCKETS))


@torch.no_grad()
def log_terms(logp: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[2 + len(BUCKETS)] float64 sums on logp's device: (sum of −log p over valid tokens, number of
    valid tokens, W_f summed per p bucket) from log p, s_f·1{counted} and the valid mask [...]."""
    logp, weight, valid = logp.reshape(-1).double(), weight.reshape(-1).double(), valid.reshape(-1)
    logp = torch.where(valid, logp, torch.zeros_like(logp))
    p = logp.exp()
    W = torch.where(valid, weight * (1 - p), torch.zeros_like(p))                     # [N]
    bucket = torch.bucketize(p, torch.tensor(P_EDGES, dtype=p.dtype, device=p.device), right=True)
    per_bucket = torch.zeros(len(BUCKETS), dtype=p.dtype, device=p.device).index_add_(0, bucket, W)
    return torch.cat([torch.stack([-logp.sum(), valid.sum().to(p.dtype)]), per_bucket])


def summarise(terms) -> dict[str, float]:
    """The logged values from summed :func:`log_terms` (one host sync for the whole tensor)."""
    nll_sum, n, *per_bucket = terms.tolist() if hasattr(terms, "tolist") else list(terms)
    total = sum(per_bucket)
    out = {"train/nll": nll_sum / n if n else float("nan")}
    out.update({f"train/wshare_{b}": (w / total if total > 0 else 0.0)
                for b, w in zip(BUCKETS, per_bucket)})
    return out
