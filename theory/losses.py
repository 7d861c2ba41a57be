"""Token losses of any registry objective, in torch (closed-form backward) and numpy.

Shapes: logits [..., V] aligned with labels [...] (the causal shift happens outside, in
:func:`shift_for_causal_lm`). log p = z_y - logsumexp(z) is computed in float32 even for bf16 logits,
as in the authors' code.

Gradient (Lemma 3.1): d f(p_y)/dz = f'(p) p (e_y - q) = s_f(p) (q - e_y), with q = softmax(z).
The backward pass uses this closed form, recomputing q from the saved logits and logsumexp, so no
float32 copy of the N x V log-softmax is kept between forward and backward. An adaptive objective's
per-token statistics of q (``obj.token_stats``, e.g. DEFT's alpha = sum_j q_j^2) are computed from
the same logits in the forward pass, detached (probsft.theory.statistics), so the closed form holds
with s_f evaluated at them.

An anchored objective (``obj.anchor = lambda``, ASFT) adds lambda·KL(r || q) per counted token, with
r = softmax(ref_logits) the base (reference) model's distribution on the same positions:
KL(r || q) = sum_j r_j (log r_j - log q_j), whose logit gradient is lambda (q - r) (r is a constant).
The caller passes ``ref_logits`` [..., V] (computed under no_grad); leaving them out, or passing
them to an objective without an anchor, is a UserError.

Masking and reductions, following the authors' trainer (paper notes §1.3):
  counted token  = label != ignore_index  and  p in I (threshold on the current p, no gradient)
  "none" -> per-token values (0 where not counted), shape of labels
  "sum"  -> sum over counted tokens
  "mean" -> sum / max(#counted, 1)   (authors: sum / (#counted + 1e-8); identical up to 1e-8,
                                      and both give loss 0 and zero gradient on an all-masked batch)
  num_items_in_batch=N -> sum / N    (normalise by a global token count across micro-batches/ranks;
                                      N must be > 0: UserError otherwise)
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from scipy.special import logsumexp

from probsft.errors import NonFiniteLogitsError, UserError
from probsft.theory.statistics import token_stats_numpy, token_stats_torch

IGNORE_INDEX = -100
"""Label of a position no loss trains on (prompt, padding): the Hugging Face convention."""
REDUCTIONS = ("mean", "sum", "none")


def shift_for_causal_lm(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """Align causal-LM logits [B, T, V] with next-token labels [B, T]: returns ([B, T-1, V], [B, T-1])."""
    return logits[..., :-1, :], labels[..., 1:]


def _check_args(logits_shape, labels_shape, reduction):
    if reduction not in REDUCTIONS:
        raise UserError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if tuple(logits_shape[:-1]) != tuple(labels_shape):
        raise UserError(f"logits {tuple(logits_shape)} must be [..., V] aligned with labels "
                        f"{tuple(labels_shape)}; shift causal-LM outputs with shift_for_causal_lm")


def check_num_items(num_items_in_batch) -> None:
    """UserError unless ``num_items_in_batch`` is None or a finite count > 0 (an int or a one-element
    tensor, as transformers passes it): 0 would give inf/NaN and a negative count gradient ascent."""
    if num_items_in_batch is None:
        return
    try:
        value = float(num_items_in_batch)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"num_items_in_batch must be a number (a token count), got "
                        f"{type(num_items_in_batch).__name__}") from None
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"num_items_in_batch must be a token count > 0, got {value:g} (0 divides "
                        "by zero; a negative count would turn training into gradient ascent)")


def reduce_tokens(values, counted, reduction, num_items_in_batch=None):
    """The one reduction of per-token losses (module docstring), for torch and numpy alike.

    ``values``: per-token f(p)·1{counted}, or already their sum (a scalar); ``counted``: the mask.
    """
    check_num_items(num_items_in_batch)
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum" and num_items_in_batch is None:
        return total
    if num_items_in_batch is not None:
        return total / num_items_in_batch
    return total / max(int(counted.sum()), 1)


class _ObjectiveTokenLoss(torch.autograd.Function):
    """Per-token f(p_y)·mask with the closed-form backward s_f(p)·mask·(q - e_y); with an anchor,
    plus lambda·KL(r || q)·mask and lambda·mask·(q - r)."""

    @staticmethod
    def forward(ctx, logits, labels, valid, obj, ref_logits):
        z = _compute_dtype(logits)                                 # [N, V], >= float32
        lse = torch.logsumexp(z, dim=-1)                           # [N]
        logp = z.gather(-1, labels[:, None]).squeeze(-1) - lse     # [N]
        counted, values, weight = _f_terms(obj, logp, valid, token_stats_torch(
            obj.token_stats, z, lse))
        ref_lse = None
        if obj.anchor is not None:
            ref_lse, kl = _kl_to_reference(z, lse, ref_logits)     # [N], [N]
            require((torch.isfinite(ref_lse) | ~valid).all(), lambda: NonFiniteLogitsError(
                "ref_logits contain NaN or +inf at a counted position"))
            values = values + float(obj.anchor) * torch.where(counted, kl, torch.zeros_like(kl))
        raise_if_not_finite(obj, finite_flags(lse, valid, values, weight, logp))
        ctx.anchored = ref_lse is not None
        ctx.save_for_backward(logits, labels, lse, weight, counted,
                              *((ref_logits, ref_lse) if ctx.anchored else ()))
        ctx.anchor = None if obj.anchor is None else float(obj.anchor)
        ctx.mark_non_differentiable(counted, logp, weight)
        return values, counted, logp, weight

    @staticmethod
    def backward(ctx, grad_values, _grad_counted, _grad_logp, _grad_weight):
        logits, labels, lse, weight, counted, *ref = ctx.saved_tensors
        coef = grad_values.to(weight.dtype) * weight               # [N], >= float32
        q = torch.exp(_compute_dtype(logits) - lse[:, None])       # [N, V]
        if not ctx.anchored:
            grad = q * coef[:, None]                               # s·q
        else:                                                      # s·q + lambda (q - r)
            ref_logits, ref_lse = ref
            a = grad_values.to(weight.dtype) * ctx.anchor * counted.to(weight.dtype)   # [N]
            r = torch.exp(_compute_dtype(ref_logits) - ref_lse[:, None])              # [N, V]
            grad = q * (coef + a)[:, None] - r * a[:, None]
        grad.scatter_add_(-1, labels[:, None], -coef[:, None])     # - s·e_y
        return grad.to(logits.dtype), None, None, None, None


def _kl_to_reference(z, lse, ref_logits):
    """(logsumexp of the reference [N], KL(r || q) [N]) for logits z [N, V] with logsumexp lse and
    reference logits [N, V]; terms with r_j = 0 count 0."""
    ref = _compute_dtype(ref_logits).to(z.dtype)
    ref_lse = torch.logsumexp(ref, dim=-1)
    log_r = ref - ref_lse[:, None]
    r = torch.exp(log_r)
    terms = torch.where(r > 0, r * (log_r - (z - lse[:, None])), torch.zeros_like(r))
    return ref_lse, terms.sum(-1)


def check_reference(obj, logits_shape, ref_logits) -> None:
    """UserError unless ``ref_logits`` is given exactly when the objective has a KL anchor, with the
    shape of the logits."""
    if obj.needs_reference and ref_logits is None:
        raise UserError(f"objective {obj.spec} anchors the model to the base model (KL term): pass "
                        "ref_logits=<the base model's logits on the same batch, [..., V]>, computed "
                        "under torch.no_grad()")
    if ref_logits is not None and not obj.needs_reference:
        raise UserError(f"ref_logits were given but objective {obj.spec} has no KL anchor; only an "
                        "anchored objective (e.g. asft) uses them")
    if ref_logits is not None and tuple(ref_logits.shape) != tuple(logits_shape):
        raise UserError(f"ref_logits {tuple(ref_logits.shape)} must have the shape of the logits "
                        f"{tuple(logits_shape)}")


def token_terms(obj, logp, valid, stats=None):
    """counted [N], f(p)·1{counted} [N], s_f(p)·1{counted} [N] from log p [N] and the valid mask
    (``stats``: {name: [N]} token statistics of an adaptive objective, detached).

    Shared by this module and the fused linear loss, so both count and weigh tokens identically.
    An anchored objective's KL term needs the logits of both models, not log p: UserError."""
    if obj.needs_reference:
        raise UserError(f"objective {obj.spec} has a KL anchor to the base model, which this loss "
                        "path cannot compute: use obj.loss(logits, labels, ref_logits=...) on "
                        "materialised logits")
    return _f_terms(obj, logp, valid, stats)


def _f_terms(obj, logp, valid, stats=None):
    logp = torch.where(valid, logp, torch.zeros_like(logp))    # keep masked rows finite
    # p rounds to exactly 1 when the target logit dominates (z = +1e4): keep log p <= log(1 - eps)
    # so f and s of objectives singular at p = 1 (log(1-p)) stay finite instead of -inf / NaN
    logp = logp.clamp(max=math.log1p(-torch.finfo(logp.dtype).eps))
    counted = valid & _indicator(obj, logp)
    zero = torch.zeros_like(logp)
    if stats:                                                  # masked rows: any finite value
        stats = {k: torch.where(valid, v, torch.ones_like(v)) for k, v in stats.items()}
    values = torch.where(counted, obj.f_of_logp(logp, stats, without_anchor=True), zero)   # anchor:
    weight = torch.where(counted, obj.s_of_logp(logp, stats, without_anchor=True), zero)  # forward
    return counted, values, weight


def finite_flags(lse, valid, values, weight, logp=None):
    """Bool tensor, no host sync: (logits finite where counted, f and s_f finite[, every counted
    target has p > 0]); the third flag only when ``logp`` is given."""
    flags = [(torch.isfinite(lse) | ~valid).all(),
             (torch.isfinite(values) & torch.isfinite(weight)).all()]
    if logp is not None:
        flags.append((logp > -math.inf).logical_or(~valid).all())
    return torch.stack(flags)


def raise_if_not_finite(obj, flags):
    """Refuse silent NaNs: non-finite logits, a counted target of probability 0 where f is infinite,
    or an f / s_f that overflows (read at once, or deferred: :func:`deferred_checks`)."""
    require(flags[0], lambda: NonFiniteLogitsError(
        "logits contain NaN or +inf at a counted position; the loss would be NaN (check the model "
        "or the learning rate)"))

    def objective_error():
        if len(flags) > 2 and not bool(flags[2]):
            return UserError(f"a counted target token has probability 0 (its logit is -inf), where "
                             f"{obj.spec} is not finite: mask that position with ignore_index, or "
                             "fix the logits (e.g. a -inf mask on a token that is a label)")
        return UserError(f"objective {obj.spec} gives a non-finite f(p) or s_f(p) at some token's "
                         "probability; rewrite f(p) so it stays finite on (0, 1)")

    require(flags[1], objective_error)


_PENDING: list | None = None        # inside deferred_checks(): the checks not yet read


def require(ok: torch.Tensor, error):
    """Raise ``error()`` unless the 0-dim bool tensor ``ok`` is true: at once (one host sync), or,
    inside :func:`deferred_checks`, when the caller reads all pending checks in one go."""
    if _PENDING is not None:
        _PENDING.append((ok, error))
    elif not bool(ok):
        raise error()


class PendingChecks:
    """The checks collected by :func:`deferred_checks`: ``flag()`` is one 0-dim tensor, true when all
    passed (read it together with other values, no extra sync); ``raise_failed()`` raises the first
    failing one's error."""

    def __init__(self, items):
        self.items = items

    def flag(self, device=None) -> torch.Tensor:
        if not self.items:
            return torch.ones((), dtype=torch.bool, device=device)
        return torch.stack([ok.to(device) for ok, _ in self.items]).all()

    def raise_failed(self):
        for ok, error in self.items:
            if not bool(ok):
                raise error()


@contextlib.contextmanager
def deferred_checks():
    """Collect the loss's checks (finite logits/f/s_f, label range) without a host sync each; the
    caller reads ``pending.flag()`` once (e.g. with the step's statistics) and calls
    ``pending.raise_failed()`` when it is false, before using the gradients."""
    global _PENDING
    outer, _PENDING = _PENDING, []
    pending = PendingChecks(_PENDING)
    try:
        yield pending
    finally:
        _PENDING = outer
        if outer is not None:
            outer.extend(pending.items)


def _compute_dtype(logits):
    """bf16/fp16 logits are upcast to float32 (authors' code); float32/float64 stay as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _indicator(obj, logp):
    if obj.interval is None:
        return torch.ones_like(logp, dtype=torch.bool)
    return obj.interval.indicator(torch.exp(logp))


def flat_labels(labels: torch.Tensor, V: int, ignore_index: int = IGNORE_INDEX):
    """(valid [N], safe [N]) of labels flattened: the trained mask, and labels with ignored
    positions set to 0 so they can index. Raises UserError for a label outside [0, V)."""
    flat = labels.reshape(-1)
    valid = flat != ignore_index
    bad = valid & ((flat < 0) | (flat >= V))
    require(~bad.any(), lambda: UserError(f"labels must be in [0, {V}) or "
                                          f"ignore_index={ignore_index}"))
    return valid, torch.where(valid & ~bad, flat, torch.zeros_like(flat))   # bad: deferred error


def token_values(obj, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                 ref_logits=None):
    """Per-token f(p)·1{counted} [...] and the counted mask [...], differentiable in logits."""
    values, counted, _, _ = token_values_and_terms(obj, logits, labels, ignore_index, ref_logits)
    return values, counted


def token_values_and_terms(obj, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                           ref_logits=None):
    """:func:`token_values` plus, detached and at no extra cost, log p [...] (0 where ignored) and
    s_f(p)·1{counted} [...], the per-token terms the training logs summarise. An anchored
    objective's values include lambda·KL(r || q); ``ref_logits`` [..., V] as the logits."""
    _check_args(logits.shape, labels.shape, "none")
    check_reference(obj, logits.shape, ref_logits)
    V = logits.shape[-1]
    flat_logits = logits.reshape(-1, V)                            # [N, V]
    flat_ref = None if ref_logits is None else ref_logits.detach().reshape(-1, V)   # [N, V]
    valid, safe = flat_labels(labels, V, ignore_index)
    values, counted, logp, weight = _ObjectiveTokenLoss.apply(flat_logits, safe, valid, obj, flat_ref)
    return tuple(t.reshape(labels.shape) for t in (values, counted, logp, weight))


def objective_loss(obj, logits, labels, ignore_index=IGNORE_INDEX, reduction="mean", num_items_in_batch=None,
                   ref_logits=None):
    """Loss of objective ``obj`` on torch logits [..., V] and labels [...] (see module docstring)."""
    _check_args(logits.shape, labels.shape, reduction)
    values, counted = token_values(obj, logits, labels, ignore_index, ref_logits)
    return reduce_tokens(values, counted, reduction, num_items_in_batch)


def objective_loss_numpy(obj, logits, labels, ignore_index=IGNORE_INDEX, reduction="mean",
                         num_items_in_batch=None, ref_logits=None):
    """float64 numpy reference of :func:`objective_loss` (value only)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    _check_args(logits.shape, labels.shape, reduction)
    check_reference(obj, logits.shape, None if ref_logits is None else np.asarray(ref_logits))
    if not np.all(np.isfinite(logits[labels != ignore_index])):
        raise NonFiniteLogitsError("logits contain NaN or inf at a counted position")
    check_num_items(num_items_in_batch)
    valid = labels != ignore_index
    safe = np.where(valid, labels, 0)
    logp = np.take_along_axis(logits, safe[..., None], -1)[..., 0] - logsumexp(logits, axis=-1)
    logp = np.minimum(np.where(valid, logp, 0.0), np.log1p(-np.finfo(np.float64).eps))
    counted = valid if obj.interval is None else valid & obj.interval.indicator(np.exp(logp))
    values = np.where(counted, obj.f_of_logp(logp, token_stats_numpy(obj.token_stats, logits),
                                             without_anchor=True), 0.0)      # anchor added below
    if obj.anchor is not None:
        log_r = np.asarray(ref_logits, dtype=np.float64)
        log_r = log_r - logsumexp(log_r, axis=-1, keepdims=True)
        log_q = logits - logsumexp(logits, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            kl = np.sum(np.where(log_r > -np.inf, np.exp(log_r) * (log_r - log_q), 0.0), axis=-1)
        values = values + float(obj.anchor) * np.where(counted, kl, 0.0)
    return reduce_tokens(values, counted, reduction, num_items_in_batch)


def counted_tokens(obj, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> int:
    """How many tokens the objective counts (not ignored, and inside the threshold) — no gradient."""
    with torch.no_grad():
        V = logits.shape[-1]
        flat_labels = labels.reshape(-1)
        valid = flat_labels != ignore_index
        if obj.interval is None:
            return int(valid.sum())
        z = _compute_dtype(logits.reshape(-1, V))
        safe = torch.where(valid, flat_labels, torch.zeros_like(flat_labels))
        logp = z.gather(-1, safe[:, None]).squeeze(-1) - torch.logsumexp(z, -1)
        return int((valid & _indicator(obj, logp)).sum())
