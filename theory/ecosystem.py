"""The SFT ecosystem's own objectives as registry families, checked against the code that ships them.

Each is a registry entry of probsft.theory.spec (``probsft.objective("eaft")``), so the losses and
``probsft describe`` reach them like any other objective (ASFT only through ``obj.loss`` with the
base model's logits; the fused path and the p-only paths refuse it with a UserError):

* ``eaft(A,K,C)`` EAFT (Diao et al. 2026, arXiv 2601.02151): NLL weighted per token by the model's
  own top-K entropy, detached: f = -(H_K/C)^A log p, so s_f = (H_K/C)^A and W_f = (H_K/C)^A (1 - p).
  ``eaft`` = ``eaft(1,20,3)`` is LLaMA-Factory's ``use_eaft_loss`` (src/llamafactory/train/
  trainer_utils.py, ``_eaft_cross_entropy``: torch.topk(logits, k=20), entropy / 3.0, ** eaft_alpha;
  3.0 is the paper's ln K = ln 20 = 2.996 rounded). axolotl's ``use_eaft`` (src/axolotl/monkeypatch/
  loss/eaft.py, ``eaft_loss``: top ``eaft_k`` = 20, entropy ** ``eaft_alpha``, not normalised) is
  ``eaft(1,20,1)``: the same direction, a gradient ln 20 ≈ 3 times larger. H_K is the statistic
  ``entropy_top<K>`` of probsft.theory.statistics (computed in the loss pass, like DEFT's sum q^2).
* ``chord`` CHORD-φ (arXiv 2508.11408; modelscope/Trinity-RFT trinity/algorithm/
  policy_loss_fn/chord_policy_loss.py, ``SFTPhiLossFn``: -logprob * phi(p).detach(), phi = p(1 - p)):
  f = -sg(p(1-p)) log p, s_f = p(1 - p), W_f = p(1 - p)^2 (the gradient of huber(1), (1-p)^2/2).
* ``asft(L)`` ASFT (Zhu et al. 2025, arXiv 2509.23753; zhuchichi56/ASFT train_v2.py mode "asft",
  LLaMA-Factory ``_asft_cross_entropy``): DFT plus L·KL(r || q) to the base model, r its softmax,
  per token (F.kl_div(log_softmax(logits), softmax(ref_logits)).sum(-1)); ``asft`` = ``asft(0.1)``
  (``kl_weight`` / ``asft_alpha`` = 0.1 in both). It needs the base model's logits:
  ``obj.needs_reference`` is true and ``obj.loss(logits, labels, ref_logits=...)`` takes them.
* ProFit-style masking (train only on tokens the model already finds probable) is the threshold
  ``nll@p>=X`` (the authors' ``OnlyTopLogP-X``), or ``nll@p>=Q<pct>`` for a data percentile.
"""

from __future__ import annotations

import sympy

from probsft.errors import SpecError
from probsft.theory.expr import MAX_EXPONENT, clip, p
from probsft.theory.objective import Objective, fmt_number, label_number
from probsft.theory.statistics import topk_entropy


def eaft(a, k, c) -> Objective:
    """EAFT: f = -(H_K/C)^A log p, H_K the top-K entropy of the current q (detached), so
    s_f = (H_K/C)^A and W_f = (H_K/C)^A (1 - p) (Lemma 3.1 with a p-free weight)."""
    if not 0 < a <= MAX_EXPONENT:
        raise SpecError(f"eaft: A must lie in (0, {MAX_EXPONENT}] (A = 0 is nll), got "
                        f"{clip(fmt_number(a), 20)}")
    if not (sympy.Rational(k).is_Integer and 2 <= k <= 1000):
        raise SpecError(f"eaft: K (top-K logits) must be an integer in [2, 1000], got "
                        f"{clip(fmt_number(k), 20)}")
    if not 0 < c <= MAX_EXPONENT:
        raise SpecError(f"eaft: C (entropy normaliser) must lie in (0, {MAX_EXPONENT}], got "
                        f"{clip(fmt_number(c), 20)}")
    h = topk_entropy(int(k)).symbol
    return Objective(f"eaft({fmt_number(a)},{int(k)},{fmt_number(c)})",
                     f"EAFT (H{int(k)}/{label_number(c)})^{label_number(a)}·(−log p)",
                     -(h / c) ** a * sympy.log(p), family="eaft")


def chord() -> Objective:
    """CHORD-φ: value -sg(p(1-p)) log p; the stop-gradient makes the logit weight s_f = p(1 - p),
    so W_f = p(1 - p)^2, peaking at p = 1/3."""
    return Objective("chord", "CHORD-φ −sg(p(1−p))·log p", -p * (1 - p) * sympy.log(p),
                     s_override=p * (1 - p), family="chord")


def asft(lam) -> Objective:
    """ASFT: DFT's f = -sg(p) log p (s_f = p) plus lam·KL(r || q) per token, r = softmax of the base
    model's logits (Objective.anchor; its gradient lam (q - r) is added in probsft.theory.losses)."""
    if not 0 < lam <= MAX_EXPONENT:
        raise SpecError(f"asft: λ must lie in (0, {MAX_EXPONENT}] (λ = 0 is dft), got "
                        f"{clip(fmt_number(lam), 20)}")
    return Objective(f"asft({fmt_number(lam)})", f"ASFT DFT + {label_number(lam)}·KL(base‖θ)",
                     -p * sympy.log(p), s_override=p, family="asft", anchor=sympy.Rational(lam))
