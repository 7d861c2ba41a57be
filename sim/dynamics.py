"""Batched training dynamics of one objective over many configurations at once.

Every objective acts on the logits only through its weight (Lemma 3.1):

    d f(p_y) / dz = s_f(p) (q - e_y),   s_f(p) = -f'(p) p,   thresholded: s_f(p) 1{p in I}.

``weights`` evaluates s_f(p)·1{p in I} for a whole [B, C] block with ``obj.s_of_logp`` and the
objective's interval (quantile bounds Q_pct are resolved per configuration on that configuration's
base-model target probabilities, as in the paper's §5 ablation), so one tensor program advances all
B configurations of one objective together.

* :func:`theory_flow` — App. E.3 (identity Gram): each context's logits follow the gradient flow
  dz_x/dt = s_f(q_ỹ)·1{q_ỹ in I}·(e_ỹ - q), integrated by Euler steps of size lr.
* :func:`learn` — shared softmax regression W [B, V, d], logits X W^T; the loss is the authors'
  mean over *counted* tokens (threshold survivors), optimised by SGD or Adam (betas 0.9/0.95 as in
  the paper's App. B.2; elementwise, so configurations stay independent inside the batch).

Both return ``{step: state}`` for every step in ``record`` (the final step always included), so one
run measures several horizons at the cost of the longest; :func:`metrics` turns a state into
per-configuration results.
"""

from __future__ import annotations

import torch

from probsft.sim.continuum import Batch, evaluate, target_probs

ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8


def bounds(obj, base_p: torch.Tensor):
    """Per-configuration threshold bounds: (lo [B], hi [B], lo_closed, hi_closed), or None.

    base_p: [B, C] base-model probabilities of the training targets (for Q_pct thresholds).
    """
    if obj.interval is None:
        return None
    B = base_p.shape[0]
    intervals = [obj.with_quantiles(base_p[b].detach().cpu().numpy()).interval for b in range(B)]
    lo = torch.tensor([float(i.lo) for i in intervals], dtype=base_p.dtype)
    hi = torch.tensor([float(i.hi) for i in intervals], dtype=base_p.dtype)
    return lo, hi, obj.interval.lo_closed, obj.interval.hi_closed


def probe_values(obj, base_p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-configuration probe-set parameters (alpha(auto)): {name: [B, 1]}, each resolved on that
    configuration's base-model target probabilities base_p [B, C], as a Q_pct threshold is."""
    from probsft.theory.statistics import PROBE_PARAMS

    return {name: torch.tensor([[PROBE_PARAMS[name].rule(row.detach().cpu().numpy())]
                                for row in base_p], dtype=base_p.dtype)
            for name in obj.probe_params}


def weights(obj, logp: torch.Tensor, bnds, stats=None) -> tuple[torch.Tensor, torch.Tensor]:
    """s_f(p)·1{p in I} and the counted mask, both [B, C], from log p [B, C]; ``stats``: an adaptive
    objective's token statistics [B, C] and probe values [B, 1]."""
    s = obj.s_of_logp(logp, stats)
    if bnds is None:
        return s, torch.ones_like(logp, dtype=torch.bool)
    lo, hi, lo_closed, hi_closed = bnds
    p = torch.exp(logp)
    above = p >= lo[:, None] if lo_closed else p > lo[:, None]
    below = p <= hi[:, None] if hi_closed else p < hi[:, None]
    counted = above & below
    return torch.where(counted, s, torch.zeros_like(s)), counted


def _logit_grad(z: torch.Tensor, labels: torch.Tensor, obj, bnds, normalise: bool, fixed=None):
    """Gradient of the loss on the logits z [B, C, V]: w (q - e_ỹ) [/ #counted]; ``fixed``: the
    probe values of :func:`probe_values`. Token statistics (DEFT's sum q^2) come from z, detached.

    One fused softmax pass, then q is scaled in place: two passes over [B, C, V] besides the
    matmuls. log p is read off q; where q_ỹ underflows it is recomputed exactly, z_ỹ - logsumexp z.
    """
    from probsft.theory.statistics import token_stats_torch

    lab = labels[..., None]
    stats = dict(fixed or {})
    if obj.token_stats:                                 # before q is computed (and later scaled)
        stats.update(token_stats_torch(obj.token_stats, z, torch.logsumexp(z, -1)))
    q = torch.softmax(z, -1)                                                 # [B, C, V]
    p = q.gather(-1, lab).squeeze(-1)                                        # [B, C]
    logp = torch.log(p)
    tiny = p < 1e-30
    if bool(tiny.any()):
        exact = z.gather(-1, lab).squeeze(-1) - torch.logsumexp(z, -1)
        logp = torch.where(tiny, exact, logp)
    w, counted = weights(obj, logp, bnds, stats)
    if normalise:                                                            # authors' mean
        w = w / counted.sum(-1, keepdim=True).clamp(min=1).to(w.dtype)
    grad = q.mul_(w[..., None])                         # w q, in place           [B, C, V]
    grad.scatter_add_(-1, lab, -w[..., None])                                # - w e_ỹ
    return grad


def theory_flow(obj, batch: Batch, lr: float, steps: int, bnds, record=(), fixed=None) -> dict:
    """Euler-integrate dz/dt = -grad_z f(q_ỹ) for every context; {step: z_step [B, C, V]}."""
    z = batch.z0.clone()
    keep = set(record) | {steps}
    out = {}
    for t in range(1, steps + 1):
        z -= lr * _logit_grad(z, batch.labels, obj, bnds, normalise=False, fixed=fixed)
        if t in keep:
            out[t] = z.clone()
    return out


def learn(obj, batch: Batch, lr: float, steps: int, optimizer: str, bnds, record=(),
          fixed=None) -> dict:
    """Train W [B, V, d] from W0 on the noisy labels; {step: W_step}."""
    keep = set(record) | {steps}
    out = {}
    W = batch.W0.clone()
    m = torch.zeros_like(W)
    v = torch.zeros_like(W)
    b1, b2 = ADAM_BETAS
    for t in range(1, steps + 1):
        z = torch.einsum("bcd,bvd->bcv", batch.X, W)                          # [B, C, V]
        g_z = _logit_grad(z, batch.labels, obj, bnds, normalise=True, fixed=fixed)
        g = torch.einsum("bcv,bcd->bvd", g_z, batch.X)                        # [B, V, d]
        if optimizer == "adam":
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            W -= lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + ADAM_EPS)
        else:
            W -= lr * g
        if t in keep:
            out[t] = W.clone()
    return out


def metrics(batch: Batch, state: torch.Tensor, mode: str) -> dict[str, torch.Tensor]:
    """Per-configuration results [B] from the final state (z_T in theory mode, W in learning mode).

    ``train/mean_p``   mean p of the training targets after training (Eq. 5 after SFT, Fig. 6 right)
    ``eval/acc``       argmax accuracy against the true token (theory: the training contexts'
                       true tokens, filler excluded; learning: held-out contexts)
    ``eval/expected_acc``  mean q(y*) = r^T q; the population risk is its negative
    ``eval/*_easy``, ``eval/*_hard``  the same per difficulty group (continuum.evaluate)
    ``diverged``       1 where the state became non-finite (metrics are then NaN, never silently)
    """
    z_train = state if mode == "theory" else batch.train_logits(state)
    diverged = ~torch.isfinite(state).flatten(1).all(-1)
    out = {"train/mean_p": target_probs(z_train, batch.labels).mean(-1),
           **evaluate(batch, batch.eval_logits(state))}
    nan = torch.full_like(out["train/mean_p"], float("nan"))
    out = {k: torch.where(diverged, nan, v) for k, v in out.items()}
    out["diverged"] = diverged.to(nan.dtype)
    return out
