"""Capability probe: where does a (model, SFT data) pair sit on the paper's capability continuum?

Teacher forcing on the response tokens (prompt masked), for each supervised token t with target y_t:

    p_t = p_theta(y_t | y_<t, x)            H_t = -sum_v q_t,v log q_t,v   (q_t = softmax(z_t))

Reported: the mean predicted probability of the targets, mean_t p_t (the paper's Eq. 5 capability
measure, Table 5), the fraction of tokens with p > 0.55 (the mass condition of the paper's main
theorem, notes §2.3/§6.4), quantiles of p (they resolve ``Q<pct>`` thresholds, paper §5), and the mean
entropy. The mean p is placed against the paper's reference points -- math ≈0.8 (model-strong),
medical ≈0.5 (model-intermediate), figfont ≈0.01 (model-weak) -- and the region's expected winners
are stated with the theory's reason (regions and predictions: probsft.validate.predictions).

The end-of-response token (``tokenizer.eos_token``, appended by the chat format / tokenize_sft) is a
format token, not part of the answer: a base model that never saw the SFT format gives it p ≈ 0, and
with short answers it is a large share of the tokens. The probe therefore also reports
``answer_mean_p`` (every response token except eos) and ``eos_mean_p``; ``placement="answer"`` places
the pair by ``answer_mean_p`` (the embedded experiment does, its answers are 1-8 characters), the
default ``"all"`` by Eq. 5 over every response token, as the paper (whose responses are long).

    probsft probe --model Qwen/Qwen2.5-Math-1.5B --data math.jsonl [--json out.json]

    >>> stats = probe(model, tokenizer, "train.jsonl")
    >>> stats["mean_p"], stats["region"], stats["expected_winners"]
"""

from __future__ import annotations

import numpy as np
import torch

from probsft.validate.data import IGNORE_INDEX, collate, read_jsonl, tokenize_sft
from probsft.validate.predictions import REGIONS, region_of  # noqa: F401 (the one definition)

QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
MASS_THRESHOLD = 0.55


@torch.no_grad()
def teacher_forced(model, examples, pad_id: int, batch_size: int = 8, with_ids: bool = False):
    """p_t and entropy H_t of every supervised token: two float64 tensors [N_tokens] (CPU), plus the
    target ids [N_tokens] when ``with_ids``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs, ents, ids = [], [], []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        logits = logits[:, :-1].float()                                  # [B, T-1, V]
        y = batch["labels"][:, 1:].to(device)                            # [B, T-1]
        keep = y != IGNORE_INDEX
        logq = torch.log_softmax(logits[keep], dim=-1)                   # [n, V]
        probs.append(logq.gather(-1, y[keep][:, None]).squeeze(-1).exp().double().cpu())
        ents.append(-(logq.exp() * logq).sum(-1).double().cpu())
        ids.append(y[keep].cpu())
    model.train(was_training)
    if not probs:
        out = (torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64),
               torch.zeros(0, dtype=torch.long))
    else:
        out = (torch.cat(probs), torch.cat(ents), torch.cat(ids))
    return out if with_ids else out[:2]


def token_probs(model, examples, pad_id: int, batch_size: int = 8) -> torch.Tensor:
    """Base-model p of every supervised token, float64 [N_tokens]."""
    return teacher_forced(model, examples, pad_id, batch_size)[0]


PLACEMENTS = ("all", "answer")


def probe(model, tokenizer, examples_or_path, batch_size: int = 8, max_length: int = 1024,
          placement: str = "all") -> dict:
    """Teacher-forced statistics of the response tokens and the continuum placement (see module).

    ``examples_or_path``: tokenised examples (tokenize_sft), records, or a JSONL path.
    ``placement``: "all" places by Eq. 5 over every response token, "answer" by the tokens other
    than the end-of-response token (``answer_mean_p``).
    """
    from probsft.errors import UserError

    if placement not in PLACEMENTS:
        raise UserError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    examples = examples_or_path          # tokenised examples, raw records, or a JSONL path
    if not isinstance(examples, list):
        examples = read_jsonl(examples)
    if examples and "input_ids" not in examples[0]:
        examples = tokenize_sft(examples, tokenizer, max_length)
    p, H, ids = teacher_forced(model, examples, tokenizer.pad_token_id, batch_size, with_ids=True)
    if p.numel() == 0:
        raise UserError("probe: the data has no response tokens (all truncated or empty?)")
    eos = ids == tokenizer.eos_token_id if tokenizer.eos_token_id is not None else \
        torch.zeros_like(ids, dtype=torch.bool)
    if placement == "answer" and bool(eos.all()):
        raise UserError("probe: placement 'answer' needs response tokens other than eos")
    answer_p = p[~eos]
    stats_all = {"mean_p": float(p.mean()),
                 "answer_mean_p": float(answer_p.mean()) if answer_p.numel() else float("nan"),
                 "eos_mean_p": float(p[eos].mean()) if bool(eos.any()) else None}
    mean_p = stats_all["mean_p" if placement == "all" else "answer_mean_p"]
    region = region_of(mean_p)
    return {
        "examples": len(examples), "tokens": int(p.numel()), "eos_tokens": int(eos.sum()),
        **stats_all, "placement": placement, "placement_mean_p": mean_p,
        "mean_log_p": float(p.log().mean()),
        f"frac_p_gt_{MASS_THRESHOLD}": float((p > MASS_THRESHOLD).double().mean()),
        "quantiles": {f"Q{q}": float(np.percentile(p.numpy(), q)) for q in QUANTILES},
        "mean_entropy": float(H.mean()),
        "region": region.name, "reference": region.reference,
        "distance_to_references": {r.name: abs(mean_p - r.ref_p) for r in REGIONS},
        "expected_winners": list(region.expected_winners), "why": region.why,
        "truncated": getattr(examples, "n_truncated", 0),
    }


def format_table(stats: dict) -> str:
    """The probe result as an aligned text table."""
    rows = [("examples / tokens", f"{stats['examples']} / {stats['tokens']}"),
            ("mean p (Eq. 5)", f"{stats['mean_p']:.4f}"),
            ("mean p without eos", f"{stats['answer_mean_p']:.4f}"),
            ("mean p of eos", "-" if stats["eos_mean_p"] is None else f"{stats['eos_mean_p']:.4f}"),
            (f"fraction p > {MASS_THRESHOLD}", f"{stats[f'frac_p_gt_{MASS_THRESHOLD}']:.4f}"),
            ("mean entropy (nats)", f"{stats['mean_entropy']:.4f}"),
            *((f"quantile {k}", f"{v:.4g}") for k, v in stats["quantiles"].items()),
            ("region", f"{stats['region']} by {stats['placement']} tokens "
                       f"(reference: {stats['reference']})"),
            ("expected winners", ", ".join(stats["expected_winners"])),
            ("why", stats["why"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
