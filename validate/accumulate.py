"""One optimizer step's gradients, exactly normalised by the global counted-token count.

For an objective f (any registry spec) and a global batch split into micro-batches m on ranks r, the
loss of the step is the token mean over the whole global batch (paper Eq. 2 with the authors'
valid-token normalisation, §1.3):

    L = sum_{r,m} S_{r,m} / N,      S_{r,m} = sum_{t counted} f(p_t),      N = sum_{r,m} n_{r,m}

where a token is *counted* when its label is not -100 and p_t lies in the objective's threshold
interval (evaluated on the current p, no gradient). We backward each micro-batch's SUM S_{r,m}, add
up the counts n_{r,m}, all-reduce N across ranks, and finally multiply every gradient by 1/N (by
W/N under DDP, which has already averaged the gradients over the W ranks). So k accumulated
micro-batches on W ranks give the same gradient as one step on the whole batch, also for thresholded
objectives, whose counts depend on p and are only known after the forward passes.

Relation to the authors' code (verl, paper notes §1.3): they backward the per-micro-batch mean
S_m / (n_m + 1e-8) divided by the number of micro-batches k, and FSDP averages ranks, i.e.
grad = 1/(kW) sum_{r,m} grad S_{r,m} / n_{r,m}. That equals ours exactly when every micro-batch
counts the same number of tokens; otherwise theirs weights the tokens of short micro-batches more.
Ours is what one large batch would give, and does not depend on how the batch is split.

    >>> stats = accumulate_gradients(model, micro_batches, probsft.objective("-p"))
    >>> stats.loss, stats.counted        # L and N; p.grad now holds dL/dtheta
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.distributed as dist

import probsft
from probsft.theory.losses import IGNORE_INDEX, shift_for_causal_lm, token_values_and_terms
from probsft.validate.logstats import log_terms, summarise


@dataclasses.dataclass(frozen=True)
class StepStats:
    loss: float        # L = sum S / N over the global batch
    counted: int       # N, counted tokens over all micro-batches and ranks
    valid: int         # response tokens (label != -100) over all micro-batches and ranks
    log: dict | None = None   # train/nll and train/wshare_* (probsft.validate.logstats) when asked


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _is_fsdp(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:                                    # torch < 2.6
        return False
    return isinstance(model, FSDPModule)


def _unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def micro_batch_sum(model, batch, obj, fused: bool = False, log: bool = False, reference=None):
    """Forward one micro-batch; returns (S, n_counted, n_valid, terms): S = sum of f(p) over counted
    tokens (differentiable scalar, float32), counts as 0-dim tensors, and with ``log`` the
    probsft.validate.logstats sums of this micro-batch (else None), still on the device.

    ``batch``: input_ids/attention_mask/labels [B, T]; logits [B, T, V] are shifted to [B, T-1, V].
    With ``fused`` the logits are never materialised: the last hidden states [B*(T-1), H] go through
    ``probsft.fused_linear_loss`` with lm_head.weight [V, H] (logit soft-capping/scaling that some
    models apply after lm_head is not supported there).
    ``reference``: the frozen base model of an anchored objective (ASFT's KL(base || model)); its
    logits on the same micro-batch, without gradient, are the loss's ``ref_logits``.
    """
    labels = batch["labels"]
    if not fused:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        lg, y = shift_for_causal_lm(logits, labels)                    # [B, T-1, V], [B, T-1]
        ref = None
        if reference is not None:
            with torch.no_grad():
                ref = reference(input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"]).logits[:, :-1]  # [B, T-1, V]
        values, counted, logp, weight = token_values_and_terms(obj, lg, y, IGNORE_INDEX,
                                                               ref_logits=ref)
        valid = y != IGNORE_INDEX
        terms = log_terms(logp, weight, valid) if log else None
        return values.sum(), counted.sum(), valid.sum(), terms
    # logits_to_keep=1 keeps the forward (and DDP's hooks) but computes lm_head at one position only.
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=True, logits_to_keep=1)
    hidden = out.hidden_states[-1][:, :-1]                              # [B, T-1, H]
    y = labels[:, 1:].reshape(-1)                                       # [N]
    h = hidden.reshape(-1, hidden.shape[-1])                            # [N, H]
    head = _unwrap(model).get_output_embeddings()
    total = probsft.fused_linear_loss(h, head.weight, y, obj, bias=head.bias,
                                      ignore_index=IGNORE_INDEX, reduction="sum")
    valid = (y != IGNORE_INDEX).sum()
    if obj.interval is None and not log:
        return total, valid, valid, None
    # thresholded or a logged step: one more pass over [chunk, V] logits, without gradient
    with torch.no_grad():
        counted = torch.zeros((), dtype=torch.long, device=y.device)
        terms = None
        for start in range(0, h.shape[0], 4096):
            yc = y[start:start + 4096]
            _, cnt, logp, weight = token_values_and_terms(obj, head(h[start:start + 4096].detach()),
                                                          yc, IGNORE_INDEX)
            counted += cnt.sum()
            if log:
                t = log_terms(logp, weight, yc != IGNORE_INDEX)
                terms = t if terms is None else terms + t
    return total, counted, valid, terms


def accumulate_gradients(model, micro_batches, obj, fused: bool = False,
                         autocast=contextlib.nullcontext, log: bool = False,
                         reference=None) -> StepStats:
    """As :func:`accumulate_gradients_async`, read into a StepStats (one host sync)."""
    return step_stats(accumulate_gradients_async(model, micro_batches, obj, fused, autocast,
                                                 log, reference).tolist())


def step_stats(values) -> StepStats:
    """StepStats from the host values [S, N, V, log terms...] of accumulate_gradients_async's
    tensor (the log terms, probsft.validate.logstats, only when it was called with ``log``)."""
    total, counted, valid = values[:3]
    n = max(int(counted), 1)
    return StepStats(loss=total / n, counted=int(counted), valid=int(valid),
                     log=summarise(values[3:]) if len(values) > 3 else None)


def accumulate_gradients_async(model, micro_batches, obj, fused: bool = False,
                               autocast=contextlib.nullcontext, log: bool = False,
                               reference=None) -> torch.Tensor:
    """Backward sum_m S_m over this rank's micro-batches, then scale grads to dL/dtheta (see module).
    With ``log`` the step's StepStats.log holds train/nll and the W_f shares by p bucket, read in
    the same host sync as the token counts (the fused path pays one extra no-grad logits pass).

    ``model`` may be wrapped in DistributedDataParallel or sharded with FSDP2's ``fully_shard``
    (gradients are synchronised on the last micro-batch only, and averaged over ranks by either);
    an unwrapped model in an initialised process group has its gradients all-reduced here.
    Gradients are expected to be zero/None on entry. Returns [S, N, V] (float64, on the device,
    no host sync: the caller reads it together with whatever else the step needs), followed by the
    log terms when ``log``. ``reference``: an anchored objective's frozen base model
    (:func:`micro_batch_sum`).
    """
    is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    is_fsdp = _is_fsdp(model)
    total = counted = valid = terms = None
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = model.no_sync() if is_ddp and not last else contextlib.nullcontext()
        if is_fsdp:
            model.set_requires_gradient_sync(last)
        with sync:
            with autocast():
                s, c, v, t = micro_batch_sum(model, batch, obj, fused, log, reference)
            s.backward()
        s, c, v = s.detach().double(), c.detach().double(), v.detach().double()
        total, counted, valid = (s, c, v) if total is None else (total + s, counted + c, valid + v)
        if t is not None:
            terms = t if terms is None else terms + t
    stats = torch.stack([total, counted, valid])                          # [3], float64
    if terms is not None:
        stats = torch.cat([stats, terms.to(stats.device)])               # [3 + terms], one reduce
    world = 1
    params = [p for p in model.parameters() if p.grad is not None]
    if _distributed():
        world = dist.get_world_size()
        dist.all_reduce(stats)
        if not (is_ddp or is_fsdp):                                       # sum grads ourselves
            for p in params:
                dist.all_reduce(p.grad)
    # an all-masked batch: loss 0, zero gradient; DDP/FSDP already averaged over the W ranks
    scale = (world if is_ddp or is_fsdp else 1) / stats[1].clamp(min=1)   # on the device
    for p in params:
        p.grad.mul_(scale.to(p.grad.dtype))
    return stats
