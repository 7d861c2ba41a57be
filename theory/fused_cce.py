"""Backend of ``fused_linear_loss(..., impl="cce")``: Apple's cut-cross-entropy (CCE) per-token loss.

CCE computes ℓ_t = -log p_t from hidden states and the LM head without materialising the logits
(its Triton kernel on CUDA; its ``torch_compile`` path elsewhere, which does hold the [N, V] logits in
the input dtype, so on CPU it is no memory saver) and, with ``reduction="none"``, backpropagates any
per-token upstream gradient. For an objective f, f(p) = f(exp(-ℓ)), and by the chain rule the logit
gradient is dL/dℓ · (q - e_y) with dL/dℓ = -dL/dlog p = s_f(p): Lemma 3.1's s_f(p)(q - e_y) with CCE's
own kernels. Thresholds count tokens on the current p (no gradient), as everywhere in probsft.

Exact against the naive path because gradient filtering is off (``filter_eps=None``; CCE's default
skips softmax blocks below bf16 resolution). No bias (CCE has none) and no soft-capping: the caller
falls back to probsft's own kernel then, and when the package is missing.
"""

from __future__ import annotations

import importlib.util

import torch

from probsft.theory.losses import finite_flags, raise_if_not_finite, token_terms


def available() -> bool:
    """Whether cut-cross-entropy is importable."""
    return importlib.util.find_spec("cut_cross_entropy") is not None


def per_token_loss(obj, h, W, safe_y, valid):
    """(f(p)·1{counted} [N] with the gradient s_f(p)(q - e_y) on the logits, counted [N]) for
    flattened hidden states h [N, H], weight W [V, H], labels safe_y [N] and the valid mask [N]."""
    from cut_cross_entropy import linear_cross_entropy

    impl = "cce" if h.is_cuda else "torch_compile"
    targets = torch.where(valid, safe_y, torch.full_like(safe_y, -100))
    nll = linear_cross_entropy(h, W, targets, ignore_index=-100, reduction="none", filter_eps=None,
                               impl=impl).float()                       # [N], 0 where ignored
    logp = -nll
    counted, values, s = token_terms(obj, logp.detach(), valid)
    raise_if_not_finite(obj, finite_flags(logp.detach(), valid, values, s))
    # value f(p); d/dlog p = -s_f(p), i.e. d/dℓ = s_f(p)
    return values - s * (logp - logp.detach()), counted
