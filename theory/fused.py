"""Fused "linear + f(p)" loss: the loss of any registry objective from hidden states and the LM head,
computed chunk by chunk over tokens, never holding the N x V logits.

    >>> import probsft
    >>> loss = probsft.fused_linear_loss(hidden, model.lm_head.weight, labels, "alpha(10)")
    >>> loss.backward()                # grads for hidden, weight (and bias) from the closed form

Shapes: hidden [..., H], lm_head_weight [V, H], bias [V] or None, labels [...] (already shifted for a
causal LM). Same semantics as :meth:`Objective.loss` on ``hidden @ W.T + b`` (probsft.theory.losses):
counted token = label != ignore_index and p in I (threshold on the current p, no gradient);
"mean" = sum / max(#counted, 1), "sum", "none", num_items_in_batch=M -> sum / M.

Gradient (Lemma 3.1): for one token, dL/dz = s_f(p) (q - e_y), q = softmax(z), so with the chunk's
logit gradient G [C, V] = coef * (q - e_y):  dL/dhidden = G W,  dL/dW = G^T hidden,  dL/db = sum_rows G.

Design:
  * reduction "mean"/"sum" (the training case): gradients are computed *in the forward pass* for the
    unnormalised sum (coef = s_f(p)·1{counted}); the Function returns the sum and the normalisation is
    ordinary autograd outside it, so backward only scales the stored gradients by the incoming scalar.
  * reduction "none": the per-token upstream gradient is unknown in forward, so backward recomputes
    the logits from the saved log-sum-exp.
  * schedule, i.e. how dW = G^T hidden is accumulated:
      "token"  one pass over token chunks, dW += G_c^T h_c per chunk (3 GEMMs in all). The sum needs
               a float32 [V, H] accumulator: free for float32 weights (it *is* the gradient), but an
               extra 2x the bf16 gradient for bf16 weights.
      "vocab"  two passes: token chunks give log-sum-exp, f, s and dhidden = G W (2 GEMMs); then
               vocabulary slices recompute z_s = h W_s^T for *all* tokens and write
               dW_s = G_s^T h in one GEMM over all N tokens (2 GEMMs), straight into the gradient in
               the weight's dtype: float32 accumulation inside the GEMM, one rounding, and no
               [V, H] accumulator at all. One GEMM more than "token".
      "auto"   "token" for float32 weights; for bf16/fp16 weights "vocab" on CUDA, and on CPU
               "vocab" where the token schedule's accumulator would break the memory bound (fewer
               than about 5 (H + C) tokens), "token" above (probsft.theory.fused_auto, :func:`plan`).
  * gemm: "input" runs the GEMMs in the input dtype; "float32" upcasts bf16/fp16 operands slice by
    slice (W in vocabulary slices of 2^21 / H rows, 8 MiB in float32, never a whole copy) for CPUs without
    bf16/fp16 GEMM units, where a bf16 GEMM is several times slower than a float32 one.
  * layout: a logits chunk is "row" ([C, V] row-major) or "col" (vocab-major: [V, C] row-major,
    used through its transpose view [C, V]); the GEMMs and the elementwise work are the same, only
    the memory order differs, and with it the BLAS speed (probsft.theory.fused_auto).
  * impl/schedule/gemm/layout "auto": the per-CPU, per-dtype rule of probsft.theory.fused_auto (what
    the CPU decides calibrated once per machine); :func:`plan` says what a call will run.
Masked tokens: on CPU the tokens whose label is ignore_index are left out before the chunks (their
f, s and gradient rows are zero anyway; prompts are often a large share of an SFT batch), so they cost
no GEMM work; on CUDA they are kept (finding them would be a host sync).
Memory: a pass holds one float32 [C, V] (or [N, S]) logits buffer, reused by its chunks (token
statistics, for DEFT/EAFT, are computed 32 rows at a time, so their temporaries stay small).
chunk_size=None picks C = min(E / V, max(128, N / 6)) tokens, rounded down to a multiple of 64
(aligned GEMM operands), E = 2^26 for float32/float64 weights on CPU, else 2^25: at most 256 MiB of
float32 logits there, 128 MiB otherwise (bf16/fp16 on CPU: a larger chunk would push back the token
count from which the token schedule fits, which gains more; CUDA: not measured, and CCE's memory is
the yardstick there), and at most a sixth of the N x V logits
(naive's working memory holds at least two such arrays), so from N >= 768 tokens on the working
memory stays under 0.1x naive's (tests/theory/test_fused_memory.py counts it); vocabulary slices
likewise S = min(2^25 / N, max(1024, V / 6)), the vocabulary pass's tokens padded to a multiple of 64.
Float32 for bf16/fp16 inputs: logits of a chunk are upcast; log-sum-exp, f, s and sums are float32.
With schedule="token", dW and db accumulate in float32 across chunks; on CUDA (torch >= 2.8) the dW
GEMM writes float32 directly; on CPU (no bf16->fp32 GEMM) each chunk's bf16 product is added,
vocabulary slice by slice, into the float32 accumulator.

impl="eager" runs plain torch ops; impl="compile" wraps each chunk's elementwise work (log-sum-exp,
f, s, threshold, softmax gradient) in torch.compile, fusing it into a few kernels (the GPU version;
it also runs on CPU with a C++ compiler). Benchmarks: benchmarks/bench_fused.py, benchmarks/gpu_fused.py.
"""

from __future__ import annotations

import functools

import torch

from probsft.errors import SpecError, UserError
from probsft.theory import fused_cce
from probsft.theory.fused_auto import choose
from probsft.theory.losses import (IGNORE_INDEX, REDUCTIONS, check_num_items, finite_flags,
                                   flat_labels, raise_if_not_finite, reduce_tokens, token_terms)
from probsft.theory.spec import parse
from probsft.theory.statistics import split_from_exp, token_stats_from_exp, token_stats_torch

IMPLS = ("auto", "eager", "compile", "cce")
SCHEDULES = ("auto", "token", "vocab")
GEMMS = ("auto", "input", "float32")
LAYOUTS = ("auto", "row", "col")
_AUTO_ELEMENTS = 1 << 25          # C·V for chunk_size=None: a 128 MiB float32 logits chunk at most,
_AUTO_ELEMENTS_CPU = 1 << 26      # 256 MiB for float32 weights on CPU (the heads' GEMMs 3-8% faster
                                  # with 384-512 than with 192-256 tokens: docs/performance.md)
_AUTO_SHARE = 6                   # ... and at most 1/6 of the naive N x V logits,
_AUTO_MIN = (128, 1024)           # ... but no fewer tokens / vocabulary rows than these
_STATS_ROWS = 32                  # rows per block of a chunk's token statistics (DEFT, EAFT)
_ALIGN = 64                       # automatic chunks and the vocabulary pass's tokens: multiples of 64
                                  # (a [V, 261] logits chunk ran 119 GFLOP/s vs 142 for [V, 256])
_SLICE_ELEMENTS = 1 << 21         # elements of a [rows, H] upcast or product temporary (8 MiB float32):
                                  # 16384-row slices took 64-128 MiB at H 1024-2048, over the bound
_COMPACT_VOCAB = 4096             # vocabulary rows per block when live tokens are moved in place


def fused_linear_loss(hidden, lm_head_weight, labels, objective, bias=None, ignore_index=IGNORE_INDEX,
                      reduction="mean", num_items_in_batch=None, chunk_size=None, impl="auto",
                      schedule="auto", vocab_chunk_size=None, gemm="auto", layout="auto"):
    """Loss of ``objective`` on logits ``hidden @ lm_head_weight.T + bias`` without materialising them.

    Args:
        hidden: [..., H] float tensor (float32, bf16, fp16 or float64).
        lm_head_weight: [V, H], same dtype as hidden.
        labels: [...] int64, aligned with hidden (shifted), ignore_index where not trained.
        objective: a spec string or an :class:`Objective`; quantile thresholds must be resolved
            (``obj.with_quantiles(base_probs)``) first.
        bias: [V] or None.
        reduction, num_items_in_batch, ignore_index: as :meth:`Objective.loss`.
        chunk_size: tokens per chunk (None: min(E / V, max(128, N / 6)), E = 2^26 for float32
            weights on CPU, else 2^25; module doc).
        impl: "auto", "eager", "compile" (torch.compile of the per-chunk elementwise work) or
            "cce" (cut-cross-entropy's per-token kernel, probsft.theory.fused_cce; falls back to
            "auto" when the package is missing, a bias is given or f needs token statistics).
        schedule: "auto", "token" or "vocab": how the weight gradient is accumulated (module doc).
        vocab_chunk_size: vocabulary rows per slice of the "vocab" schedule (None:
            min(2^25 / N, max(1024, V / 6))).
        gemm: "auto", "input" (GEMMs in the input dtype) or "float32" (bf16/fp16 operands upcast
            slice by slice, for CPUs without bf16/fp16 GEMM units); see probsft.theory.fused_auto.
        layout: "auto", "row" or "col": the memory order of a logits chunk (module doc). On CPU
            "auto" choices are calibrated once per machine and cached
            (probsft.theory.fused_auto.cache_path).
    Returns:
        a scalar (mean/sum) or per-token values shaped like labels (none), float32 for bf16 inputs.
    """
    obj = parse(objective)
    if obj.needs_probe:
        raise SpecError(f"objective {obj.spec} has unresolved probe-set parameter(s) or quantile "
                        "threshold(s): call .resolve(base_probs) first (`probsft finetune` resolves "
                        "them on the base model by itself)")
    if obj.needs_reference:
        raise UserError(f"objective {obj.spec} has a KL anchor to the base model, which needs both "
                        "models' logits: the fused path does not take them; use obj.loss(logits, "
                        "labels, ref_logits=...)")
    if reduction not in REDUCTIONS:
        raise UserError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    check_num_items(num_items_in_batch)
    if impl not in IMPLS:
        raise UserError(f"impl must be one of {IMPLS}, got {impl!r}")
    if schedule not in SCHEDULES:
        raise UserError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if gemm not in GEMMS:
        raise UserError(f"gemm must be one of {GEMMS}, got {gemm!r}")
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if lm_head_weight.dim() != 2 or hidden.shape[-1] != lm_head_weight.shape[1]:
        raise UserError(f"hidden {tuple(hidden.shape)} must be [..., H] and lm_head_weight "
                        f"{tuple(lm_head_weight.shape)} must be [V, H]")
    if tuple(hidden.shape[:-1]) != tuple(labels.shape):
        raise UserError(f"hidden {tuple(hidden.shape)} must be [..., H] aligned with labels "
                        f"{tuple(labels.shape)}")
    if hidden.dtype != lm_head_weight.dtype or (bias is not None and bias.dtype != hidden.dtype):
        raise UserError("hidden, lm_head_weight and bias must share one dtype")
    V, H = lm_head_weight.shape
    if bias is not None and tuple(bias.shape) != (V,):
        raise UserError(f"bias must be [V] = [{V}], got {tuple(bias.shape)}")
    if impl == "cce" and (bias is not None or obj.token_stats or not fused_cce.available()):
        impl = "auto"       # no bias / no sum q^2 (deft) in CCE, or package missing: our own kernel
    run = plan(lm_head_weight, labels.numel(), impl, schedule, gemm,
               "row" if impl == "cce" else layout, chunk_size, vocab_chunk_size)
    impl, schedule, gemm, layout, chunk_size, vocab_chunk_size = (
        run[k] for k in ("impl", "schedule", "gemm", "layout", "chunk_size", "vocab_chunk_size"))
    flat_h = hidden.reshape(-1, H)                                  # [N, H]
    valid, safe_y = flat_labels(labels, V, ignore_index)           # [N], [N]
    per_token = reduction == "none"
    if impl == "cce":                         # cut-cross-entropy's per-token kernel (fused_cce.py)
        out, counted = fused_cce.per_token_loss(obj, flat_h, lm_head_weight, safe_y, valid)
        out = out if per_token else out.sum()
    else:
        rows = _cpu_rows(valid)                # CPU: the masked tokens are left out (no work)
        h_in, y_in, v_in = (flat_h, safe_y, valid) if rows is None else \
            (flat_h[rows], safe_y[rows], valid[rows])                    # [n, H], [n], [n]
        out, counted = _FusedLinearObjective.apply(h_in, lm_head_weight, bias, y_in, v_in, obj,
                                                   (chunk_size, vocab_chunk_size, gemm, layout),
                                                   per_token, impl, schedule)
        if rows is not None and per_token:                               # back to [N]: 0 if masked
            out = out.new_zeros(valid.shape).index_copy(0, rows, out)
            counted = torch.zeros_like(valid).index_copy(0, rows, counted)
    if per_token:
        return out.reshape(labels.shape)
    return reduce_tokens(out, counted, reduction, num_items_in_batch)   # out: the sum already


def plan(lm_head_weight, n_tokens, impl="auto", schedule="auto", gemm="auto", layout="auto",
         chunk_size=None, vocab_chunk_size=None) -> dict:
    """What :func:`fused_linear_loss` runs for ``n_tokens`` tokens (labels.numel(), masked ones
    included) and this [V, H] weight (its dtype and device): {"impl", "schedule", "gemm" (the GEMMs'
    torch dtype), "layout", "chunk_size", "vocab_chunk_size"}, every "auto"/None resolved (on CPU the
    first call per machine may calibrate, probsft.theory.fused_auto). The weight's values are not
    read: ``torch.zeros((), dtype=d).expand(V, H)`` describes a head without allocating it."""
    V, H = lm_head_weight.shape
    n_tokens = max(1, n_tokens)
    if chunk_size is None:
        wide = lm_head_weight.device.type == "cpu" and lm_head_weight.dtype.itemsize >= 4
        cap = _AUTO_ELEMENTS_CPU if wide else _AUTO_ELEMENTS
        chunk_size = _auto_width(n_tokens, V, _AUTO_MIN[0], cap)
    if vocab_chunk_size is None:
        vocab_chunk_size = min(V, _auto_width(V, n_tokens, _AUTO_MIN[1]))
    for name, value in (("chunk_size", chunk_size), ("vocab_chunk_size", vocab_chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be a positive int, got {value!r}")
    impl, schedule, gemm, layout = choose(lm_head_weight, _token_fits(n_tokens, V, H, chunk_size),
                                          impl, schedule, gemm, layout, fused_linear_loss)
    return {"impl": impl, "schedule": schedule, "gemm": gemm, "layout": layout,
            "chunk_size": chunk_size, "vocab_chunk_size": vocab_chunk_size}


def _token_fits(n, V, H, chunk):
    """Whether the token schedule keeps bf16/fp16 weights within the memory bound although it sums
    dW in a float32 [V, H] accumulator: that accumulator, one float32 slice of W (upcast for a
    float32 GEMM), the chunk's float32 logits [C, V] and its [C, H] float32 operands (hidden upcast,
    dhidden product, its rounding) together within a tenth of the 8·n·V bytes naive holds at least
    (float32 logits and their gradient). From about n >= 5 (H + C) tokens on; the vocabulary
    schedule, which needs no accumulator, costs one GEMM more (0.75-0.78x the time without bf16 GEMM
    units, docs/performance.md)."""
    C = min(chunk, n)
    return 4 * (V * H + min(V, _slice_rows(H)) * H + C * (V + 3 * H)) <= 0.8 * n * V


class _FusedLinearObjective(torch.autograd.Function):
    """(sum or per-token f(p)·1{counted}, counted) with closed-form grads for hidden, weight, bias."""

    @staticmethod
    def forward(ctx, h, W, b, y, valid, obj, chunks, per_token, impl, schedule):
        chunk, ctx.width, ctx.gemm, ctx.layout = chunks
        need = ctx.needs_input_grad[:3]
        grad_now = any(need) and not per_token
        by_vocab = schedule == "vocab" and need[1]
        math = _chunk_math(obj, impl)
        N = h.shape[0]
        cdt = _compute_dtype(h.dtype)
        values = torch.zeros(N, dtype=cdt, device=h.device)
        counted = torch.zeros(N, dtype=torch.bool, device=h.device)
        keep = per_token or (grad_now and by_vocab)          # lse and s for a later vocabulary pass
        lse_all = torch.zeros(N, dtype=cdt, device=h.device) if keep else None
        s_all = torch.zeros(N, dtype=cdt, device=h.device) if keep else None
        grads = _GradBuffers(h, W, b, need, by_vocab, ctx.gemm) if grad_now else None
        flags = torch.ones(2, dtype=torch.bool, device=h.device)
        want_G = grad_now and _token_pass_needs_G(need, b, by_vocab)
        scratch = _scratch(min(chunk, N), W.shape[0], ctx.gemm, h)
        for lo in range(0, N, chunk):
            hi = min(lo + chunk, N)
            z = _logits(h[lo:hi], W, b, ctx.gemm, ctx.layout, scratch)    # [C, V] float32+
            lse, vals, cnt, s, G = math(z, y[lo:hi], valid[lo:hi], want_G)
            flags &= finite_flags(lse, valid[lo:hi], vals, s)
            values[lo:hi], counted[lo:hi] = vals, cnt
            if keep:
                lse_all[lo:hi], s_all[lo:hi] = lse, s
            if want_G:
                grads.add(G, h, W, lo, hi, _live_rows(s))
            del z, G
        del scratch                  # freed before the vocabulary pass allocates its own buffer
        raise_if_not_finite(obj, flags)                                   # one host sync
        if grad_now and by_vocab:
            _vocab_pass(grads.gW, h, W, b, y, lse_all, s_all, impl, ctx.width, ctx.gemm, ctx.layout)
        ctx.mark_non_differentiable(counted)
        ctx.per_token, ctx.chunk, ctx.impl, ctx.schedule = per_token, chunk, impl, schedule
        if per_token:
            ctx.save_for_backward(h, W, b, y, lse_all, s_all)
            return values, counted
        ctx.grads = grads.finish() if grad_now else (None, None, None)
        return values.sum(), counted

    @staticmethod
    def backward(ctx, grad_out, _grad_counted):
        if not ctx.per_token:
            if ctx.grads is None:
                raise UserError("fused_linear_loss: backward through the same loss twice; its "
                                "gradients are computed in the forward pass and handed over once "
                                "(retain_graph=True cannot replay them): compute the loss again")
            gh, gW, gb = (None if g is None else g.mul_(grad_out.to(g.dtype)) for g in ctx.grads)
            ctx.grads = None
            return gh, gW, gb, *(None,) * 7
        h, W, b, y, lse_all, s_all = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        by_vocab = ctx.schedule == "vocab" and need[1]
        grads = _GradBuffers(h, W, b, need, by_vocab, ctx.gemm)
        coef_all = grad_out.to(s_all.dtype) * s_all                     # [N]
        if _token_pass_needs_G(need, b, by_vocab):
            scratch = _scratch(min(ctx.chunk, h.shape[0]), W.shape[0], ctx.gemm, h)
            for lo in range(0, h.shape[0], ctx.chunk):
                hi = min(lo + ctx.chunk, h.shape[0])
                G = _softmax_grad_(_logits(h[lo:hi], W, b, ctx.gemm, ctx.layout, scratch),
                                   lse_all[lo:hi], y[lo:hi], coef_all[lo:hi])
                grads.add(G, h, W, lo, hi, _live_rows(coef_all[lo:hi]))
            scratch = G = None                              # before the vocabulary pass's buffer
        if by_vocab:
            _vocab_pass(grads.gW, h, W, b, y, lse_all, coef_all, ctx.impl, ctx.width, ctx.gemm,
                        ctx.layout)
        gh, gW, gb = grads.finish()
        return gh, gW, gb, *(None,) * 7


def _auto_width(n, other, least, elements=_AUTO_ELEMENTS):
    """Rows of an [n, other] array per chunk: min(elements / other, max(least, n / 6)), rounded down
    to a multiple of _ALIGN when that is at least _ALIGN (aligned GEMM operands), at least 1."""
    rows = min(elements // other, max(least, -(-n // _AUTO_SHARE)))
    return rows - rows % _ALIGN if rows >= _ALIGN else max(1, rows)


def _cpu_rows(mask):
    """Indices [n] where ``mask`` [n] holds, when leaving the other rows out pays: on CPU, where
    reading the mask on the host costs nothing, and some row is False. None otherwise (CUDA: no host
    sync; the other rows then cost a GEMM row each, and give zero gradient either way). Used for
    the masked tokens (``valid``) and for tokens of gradient weight 0 (:func:`_live_rows`)."""
    if mask.device.type != "cpu" or bool(mask.all()):
        return None
    return mask.nonzero().squeeze(1)


def _live_rows(weight):
    """Indices [k] of a chunk's tokens whose logit-gradient weight (s_f, or grad_out·s_f) is not 0
    (CPU, some 0; else None): the others' G rows are exactly 0 (a thresholded f below its
    threshold), so the dhidden and dW GEMMs can skip them."""
    return _cpu_rows(weight != 0)


def _compact_rows_(G, rows):
    """G [C, V] whose rows outside ``rows`` (ascending indices [k]) are zero -> [k, V], those rows in
    order, moved in place to the front of G's own storage (its first k rows when row-major, its first
    k columns of the [V, C] buffer when vocab-major), so no [k, V] copy is made; a block of 32 rows
    (or 4096 vocabulary rows) at a time goes through a small temporary. Sources never lie before
    their targets, so no row is overwritten before it is read."""
    k = rows.numel()
    if G.is_contiguous():
        for j in range(0, k, _STATS_ROWS):
            block = rows[j:j + _STATS_ROWS]
            G[j:j + block.numel()] = G.index_select(0, block)
        return G[:k]
    Gt = G.t()
    if Gt.is_contiguous():                                              # vocab-major [V, C]
        for v in range(0, Gt.shape[0], _COMPACT_VOCAB):
            block = Gt[v:v + _COMPACT_VOCAB]
            block[:, :k] = block.index_select(1, rows)
        return Gt[:, :k].t()
    return G.index_select(0, rows)


def _slice_rows(H):
    """Rows per slice of a [V, H] operand upcast or produced in float32 on CPU: 2^21 / H (at least
    _ALIGN), so that temporary stays 8 MiB whatever H is."""
    return max(_ALIGN, _SLICE_ELEMENTS // max(1, H))


def _compute_dtype(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _scratch(rows, cols, gemm, like):
    """One flat buffer for the logits of every chunk of a pass (rows x cols at most), when the GEMMs
    write the compute dtype: allocated once, so later chunks reuse its pages rather than fault in
    fresh ones (a large chunk is mmap'ed anew by malloc each time). None for bf16/fp16 GEMMs."""
    if gemm != _compute_dtype(gemm):
        return None
    return torch.empty(rows * cols, dtype=gemm, device=like.device)


def _logits(h, W, b, gemm, layout, scratch=None):
    """One chunk's logits [C, V] in the compute dtype: with gemm = W's dtype as the naive path computes
    them (input dtype GEMM), upcast; with gemm = float32 for bf16/fp16 W from float32 operands, W upcast
    by slices. layout "col": computed as W h^T, [V, C] row-major, returned as its transpose view.
    Written into ``scratch`` (a flat buffer from :func:`_scratch`) when one is given."""
    col = layout == "col"
    C, V = h.shape[0], W.shape[0]
    shape = (V, C) if col else (C, V)
    if gemm == W.dtype and scratch is None:                  # bf16/fp16 GEMMs, then upcast
        if col:
            zt = W @ h.t() if b is None else torch.addmm(b[:, None], W, h.t())
            return zt.to(_compute_dtype(zt.dtype)).t()       # preserve_format: stays vocab-major
        z = h @ W.t() if b is None else torch.addmm(b, h, W.t())
        return z.to(_compute_dtype(z.dtype))
    out = torch.empty(shape, dtype=gemm, device=h.device) if scratch is None else \
        scratch[:C * V].view(shape)
    if gemm == W.dtype:                                      # float32/float64: straight into out
        a, c = (W, h.t()) if col else (h, W.t())
        if b is None:
            torch.mm(a, c, out=out)
        else:
            torch.addmm(b[:, None] if col else b, a, c, out=out)
        return out.t() if col else out
    hg = h.to(gemm)
    step = _slice_rows(W.shape[1])
    for v in range(0, V, step):
        Ws = W[v:v + step].to(gemm)
        bs = None if b is None else b[v:v + step].to(gemm)
        if col and bs is None:
            torch.mm(Ws, hg.t(), out=out[v:v + step])
        elif col:
            torch.addmm(bs[:, None], Ws, hg.t(), out=out[v:v + step])
        else:
            out[:, v:v + step] = hg @ Ws.t() if bs is None else torch.addmm(bs, hg, Ws.t())
        del Ws, bs                                   # before the next slice's: one alive at a time
    return out.t() if col else out


def _rows_mm(G, W, gemm):
    """G [C, V] @ W [V, H] in ``gemm`` precision, W upcast slice by slice (contraction over V)."""
    out = torch.zeros(G.shape[0], W.shape[1], dtype=gemm, device=G.device)
    step = _slice_rows(W.shape[1])
    for v in range(0, W.shape[0], step):
        out.addmm_(G[:, v:v + step].to(gemm), W[v:v + step].to(gemm))
    return out


def _token_pass_needs_G(need, b, by_vocab):
    """Whether the token pass must form G: always for the token schedule; with the vocabulary
    schedule (which writes dW itself) only for dhidden and dbias."""
    return not by_vocab or need[0] or (need[2] and b is not None)


def _softmax_grad_(z, lse, y, coef):
    """In place: z [C, V] -> coef (softmax(z) - e_y), the logit gradient of Lemma 3.1."""
    return _slice_softmax_grad(z, lse, coef).scatter_add_(-1, y[:, None], -coef[:, None])


def _token_math(obj, z, y, valid, want_grad):
    """Per chunk: lse [C], f·1{counted} [C], counted [C], s·1{counted} [C], G [C, V] or None.
    z [C, V] is overwritten. Three passes over it: the row maximum m, e = exp(z - m) in place with its
    sum S (lse = m + log S), and G = e·s/S in place (torch.logsumexp would make two [C, V]
    temporaries and G another exp pass). An adaptive objective's token statistics come from the
    same chunk: those with a ``from_exp`` (DEFT's sum q^2, EAFT's top-K entropy) from e after the
    exp pass (one more read of e), the others from z before it is overwritten; both schedules run
    this token pass, so both get them."""
    on_z, on_e = split_from_exp(obj.token_stats)
    stats = _row_blocks(lambda zb: token_stats_torch(on_z, zb, torch.logsumexp(zb, dim=-1)), z) \
        if on_z else {}
    zy = z.gather(-1, y[:, None]).squeeze(-1)
    m = z.amax(-1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))      # all -inf: lse = -inf; inf/nan:
    S = z.sub_(m[:, None]).exp_().sum(-1)                             # lse non-finite, then refused
    if on_e:
        stats.update(_row_blocks(lambda eb, Sb: token_stats_from_exp(on_e, eb, Sb), z, S))  # z: e
    lse = m + S.log()
    cnt, vals, s = token_terms(obj, zy - lse, valid, stats)
    if not want_grad:
        return lse, vals, cnt, s, None
    coef = torch.where(S > 0, s / S, torch.zeros_like(s))
    G = z.mul_(coef[:, None]).scatter_add_(-1, y[:, None], -s[:, None])
    return lse, vals, cnt, s, G


def _row_blocks(stats_of, *rows):
    """Token statistics {name: [C]} of a chunk, ``stats_of`` applied to _STATS_ROWS rows at a time
    of the [C, ...] tensors ``rows``: their temporaries (torch.logsumexp's, 2z, e·e, top-K
    candidates) stay [_STATS_ROWS, V] instead of [C, V]."""
    parts = [stats_of(*block) for block in zip(*(r.split(_STATS_ROWS) for r in rows))]
    return {n: torch.cat([part[n] for part in parts]) for n in parts[0]}


@functools.lru_cache(maxsize=64)
def _chunk_math(obj, impl):
    fn = functools.partial(_token_math, obj)
    return torch.compile(fn, dynamic=True) if impl == "compile" else fn


class _GradBuffers:
    """Gradients for hidden [N, H] (per chunk, complete), weight [V, H] and bias [V] (float32 sums)."""

    def __init__(self, h, W, b, need, by_vocab=False, gemm=None):
        """``by_vocab``: gW is written by _vocab_pass in W's dtype, not accumulated here;
        ``gemm``: the GEMMs' dtype (None: W's dtype)."""
        self.dtypes = (h.dtype, W.dtype, None if b is None else b.dtype)
        self.by_vocab = by_vocab
        self.gemm = W.dtype if gemm is None else gemm
        acc = W.dtype if by_vocab else _compute_dtype(W.dtype)
        self.gh = torch.empty_like(h) if need[0] else None
        alloc = torch.empty if by_vocab else torch.zeros                  # written vs summed into
        self.gW = alloc(W.shape, dtype=acc, device=W.device) if need[1] else None
        self.gb = torch.zeros(W.shape[0], dtype=acc, device=W.device) if need[2] and b is not None \
            else None

    def add(self, G, h, W, lo, hi, rows=None):
        """Fold one chunk's logit gradient G [C, V] (compute dtype, rows lo:hi of h) into the three
        gradients. ``rows`` (from :func:`_live_rows`): the only rows of G that are not zero; the
        GEMMs then run on those k rows (G compacted in place), and the other rows of dhidden are 0."""
        if rows is None:
            self._add(G, h[lo:hi], W, slice(lo, hi))
            return
        if self.gh is not None:
            self.gh[lo:hi] = 0
        if rows.numel():
            self._add(_compact_rows_(G, rows), h[lo:hi].index_select(0, rows), W, rows + lo)

    def _add(self, G, hc, W, where):
        """G [k, V], hc [k, H]: dhidden rows ``where`` (a slice, or indices [k]) = G W; dW += G^T hc;
        dbias += the column sums of G."""
        if self.gb is not None:
            self.gb += G.sum(0)
        if self.gemm != W.dtype:                                        # float32 GEMMs, bf16 W
            if self.gh is not None:
                self.gh[where] = _rows_mm(G, W, self.gemm).to(self.gh.dtype)
            if self.gW is not None and not self.by_vocab:               # float32 accumulator
                self.gW.addmm_(G.t().to(self.gemm), hc.to(self.gemm))
            return
        G = G.to(W.dtype)                                               # GEMMs in the input dtype
        if self.gh is not None:
            if isinstance(where, slice):
                torch.mm(G, W, out=self.gh[where])                      # [C, V] @ [V, H]
            else:
                self.gh.index_copy_(0, where, G @ W)                    # [k, H]
        if self.gW is not None and not self.by_vocab:
            _addmm_acc(self.gW, G.t(), hc)                              # [V, k] @ [k, H]

    def finish(self):
        gW = None if self.gW is None else self.gW.to(self.dtypes[1])
        gb = None if self.gb is None else self.gb.to(self.dtypes[2])
        return self.gh, gW, gb


def _vocab_pass(gW, h, W, b, y, lse, coef, impl, width, gemm, layout):
    """dW[v0:v1] = G_s^T h for vocabulary slices s: one GEMM over all N tokens per slice, written
    into ``gW`` (W's dtype) directly; G_s = coef·(softmax - e_y) restricted to the slice's columns."""
    V = W.shape[0]
    slice_grad = _slice_math(impl)
    rows = _live_rows(coef)
    if rows is not None:     # tokens of weight 0 give G columns of 0: left out of both GEMMs (CPU)
        h, y, lse, coef = (x.index_select(0, rows) for x in (h, y, lse, coef))
    h = h.to(gemm)                                                      # once, not per slice
    pad = -h.shape[0] % _ALIGN
    if pad:        # zero tokens with coefficient 0 (and lse = max: exp underflows, no inf * 0) make
        # the token dimension, the leading one of a vocab-major slice, a multiple of _ALIGN; exact
        h = torch.cat([h, h.new_zeros(pad, h.shape[1])])
        lse = torch.cat([lse, lse.new_full((pad,), torch.finfo(lse.dtype).max)])
        coef = torch.cat([coef, coef.new_zeros(pad)])
        y = torch.cat([y, y.new_zeros(pad)])
    scratch = _scratch(h.shape[0], min(width, V), gemm, h)
    for v0 in range(0, V, width):
        v1 = min(v0 + width, V)
        z = _logits(h, W[v0:v1], None if b is None else b[v0:v1], gemm, layout, scratch)  # [N, S]
        G = slice_grad(z, lse, coef)
        inside = (y >= v0) & (y < v1)                                 # no boolean indexing:
        G.scatter_add_(1, (y - v0).clamp(0, v1 - v0 - 1)[:, None],       # no host sync
                       torch.where(inside, -coef, torch.zeros_like(coef))[:, None])
        if gemm == W.dtype:
            torch.mm(G.to(W.dtype).t(), h, out=gW[v0:v1])             # [S, N] @ [N, H]
        else:                                    # float32 GEMMs, one rounding, [rows, H] at a time
            step = _slice_rows(h.shape[1])
            for a in range(0, v1 - v0, step):
                e = min(a + step, v1 - v0)
                gW[v0 + a:v0 + e] = G.t()[a:e] @ h
        del z, G


def _slice_softmax_grad(z, lse, coef):
    """In place: z [N, S] -> coef·softmax(z) on z's columns (the one-hot part is added after)."""
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))   # masked -inf rows stay 0
    return z.sub_(lse[:, None]).exp_().mul_(coef[:, None])


@functools.lru_cache(maxsize=4)
def _slice_math(impl):
    return torch.compile(_slice_softmax_grad, dynamic=True) if impl == "compile" else \
        _slice_softmax_grad


def _addmm_acc(acc, a, b):
    """acc += a @ b with a float32 (or float64) accumulator for any input dtype."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif acc.is_cuda:
        torch.addmm(acc, a, b, out_dtype=acc.dtype, out=acc)
    else:                                                               # CPU: no bf16 -> fp32 GEMM
        step = _slice_rows(acc.shape[1])
        for v in range(0, acc.shape[0], step):
            acc[v:v + step] += a[v:v + step] @ b
