"""Capability probe: where does a (model, SFT data) pair sit on the paper's capability continuum?

Teacher forcing on the response tokens (prompt masked), for each supervised token t with target y_t:

    p_t = p_theta(y_t | y_<t, x)            H_t = -sum_v q_t,v log q_t,v   (q_t = softmax(z_t))

Reported: the mean predicted probability of the targets, mean_t p_t (the paper's Eq. 5 capability
measure, Table 5), the fraction of tokens with p > 0.55 (the mass condition of the paper's main
theorem, notes §2.3/§6.4), quantiles of p (they resolve ``Q<pct>`` thresholds, paper §5), a
histogram of p, the mean entropy and sum_j q_j^2 of the next-token distributions (DEFT's
per-token alpha), the top-1 accuracy (the target is the argmax of q), the share of tokens the
model gets *confidently wrong* (argmax not the target, max_j q_j > 0.5) and an estimate of the
data's label noise from the answer tokens (``noise_estimate``: the share of wrong targets with its
interval, and the kind of noise; probsft.validate.noise). The mean p is placed against the paper's
reference points -- math ≈0.8 (model-strong), medical ≈0.5 (model-intermediate), figfont ≈0.01
(model-weak) -- and the region's expected winners are stated with the theory's reason (regions
and predictions: probsft.continuum.predictions).

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
from probsft.validate.noise import CONFIDENT, confidently_wrong, estimate_noise
from probsft.validate.regions import REGIONS, region_of  # noqa: F401 (the one definition)

QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
MASS_THRESHOLD = 0.55


@torch.no_grad()
def token_statistics(model, examples, pad_id: int, batch_size: int = 8, on_batch=None,
                     progress: bool = False) -> dict[str, torch.Tensor]:
    """Per supervised token: ``p``, ``entropy`` H(q), ``sumsq`` sum_j q_j^2, ``maxq`` max_j q_j
    (float64 [N_tokens], CPU), ``top1`` (bool: the target is the argmax of q), the target ``ids``
    and the ``record`` (index into ``examples``) it belongs to [N_tokens].
    ``on_batch(logq [n, V], y [n])`` sees each batch's full log-distributions (float32, on the
    model's device) before they are dropped."""
    from tqdm.auto import tqdm

    from probsft.theory.statistics import token_stats_torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    cols = {"p": [], "entropy": [], "sumsq": [], "maxq": [], "top1": [], "ids": [], "record": []}
    bar = tqdm(total=len(examples), desc="probe", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        logits = logits[:, :-1].float()                                  # [B, T-1, V]
        y = batch["labels"][:, 1:].to(device)                            # [B, T-1]
        keep = y != IGNORE_INDEX
        z = logits[keep]                                                 # [n, V]
        lse = torch.logsumexp(z, dim=-1)
        logq = z - lse[:, None]
        stats = token_stats_torch(("entropy", "sumsq"), z, lse)
        cols["p"].append(logq.gather(-1, y[keep][:, None]).squeeze(-1).exp().double().cpu())
        cols["entropy"].append(stats["entropy"].double().cpu())
        cols["sumsq"].append(stats["sumsq"].double().cpu())
        top = logq.max(dim=-1)
        cols["maxq"].append(top.values.exp().double().cpu())
        cols["top1"].append((top.indices == y[keep]).cpu())
        cols["ids"].append(y[keep].cpu())
        rows = torch.arange(start, start + len(y))[:, None].expand(y.shape)      # [B, T-1]
        cols["record"].append(rows[keep.cpu()])
        if on_batch is not None:
            on_batch(logq, y[keep])
        bar.update(len(batch["input_ids"]))
    bar.close()
    model.train(was_training)
    empty = {"p": torch.float64, "entropy": torch.float64, "sumsq": torch.float64,
             "maxq": torch.float64, "top1": torch.bool, "ids": torch.long, "record": torch.long}
    return {k: torch.cat(v) if v else torch.zeros(0, dtype=empty[k]) for k, v in cols.items()}


def teacher_forced(model, examples, pad_id: int, batch_size: int = 8, with_ids: bool = False):
    """p_t and entropy H_t of every supervised token: two float64 tensors [N_tokens] (CPU), plus the
    target ids [N_tokens] when ``with_ids``."""
    st = token_statistics(model, examples, pad_id, batch_size)
    return (st["p"], st["entropy"], st["ids"]) if with_ids else (st["p"], st["entropy"])


def token_probs(model, examples, pad_id: int, batch_size: int = 8) -> torch.Tensor:
    """Base-model p of every supervised token, float64 [N_tokens]."""
    return teacher_forced(model, examples, pad_id, batch_size)[0]


def frac_confident_wrong(st: dict) -> float:
    """Share of the tokens of :func:`token_statistics` ``st`` whose argmax is not the target and
    has q above :data:`CONFIDENT`."""
    return float(confidently_wrong(st).double().mean())


PLACEMENTS = ("all", "answer")


HISTOGRAM_EDGES = tuple(i / 10 for i in range(11))       # p buckets [0, 0.1), ..., [0.9, 1]


def p_histogram(p) -> dict[str, float]:
    """Share of tokens per p bucket of width 0.1 (keys "0.0-0.1" ... "0.9-1.0")."""
    counts, _ = np.histogram(np.asarray(p, dtype=float), bins=HISTOGRAM_EDGES)
    total = max(int(counts.sum()), 1)
    return {f"{lo:.1f}-{hi:.1f}": c / total
            for lo, hi, c in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:], counts.tolist())}


def probe(model, tokenizer, examples_or_path, batch_size: int = 8, max_length: int = 1024,
          placement: str = "all", on_batch=None, progress: bool = False) -> dict:
    """Teacher-forced statistics of the response tokens and the continuum placement (see module).

    ``examples_or_path``: tokenised examples (tokenize_sft), records, or a JSONL path.
    ``placement``: "all" places by Eq. 5 over every response token, "answer" by the tokens other
    than the end-of-response token (``answer_mean_p``). ``on_batch``/``progress``: see
    :func:`token_statistics` (probsft.continuum.recommend uses them for the first-order rates).
    """
    from probsft.errors import UserError

    if placement not in PLACEMENTS:
        raise UserError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    examples = examples_or_path          # tokenised examples, raw records, or a JSONL path
    if not isinstance(examples, list):
        examples = read_jsonl(examples)
    if examples and "input_ids" not in examples[0]:
        examples = tokenize_sft(examples, tokenizer, max_length)
    st = token_statistics(model, examples, tokenizer.pad_token_id, batch_size, on_batch, progress)
    p, H, ids = st["p"], st["entropy"], st["ids"]
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
        "mean_entropy": float(H.mean()), "mean_sumsq": float(st["sumsq"].mean()),
        "top1_accuracy": float(st["top1"].double().mean()),
        "frac_confident_wrong": frac_confident_wrong(st),
        "p_histogram": p_histogram(p.numpy()),
        "noise_estimate": estimate_noise(st, keep=~eos) if bool((~eos).any()) else None,
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
            ("mean sum_j q_j^2", f"{stats['mean_sumsq']:.4f}"),
            ("top-1 accuracy", f"{stats['top1_accuracy']:.4f}"),
            (f"confidently wrong (q_max > {CONFIDENT})", f"{stats['frac_confident_wrong']:.4f}"),
            ("p histogram (0.1 bins)", " ".join(f"{v:.2f}" for v in stats["p_histogram"].values())),
            *((f"quantile {k}", f"{v:.4g}") for k, v in stats["quantiles"].items()),
            ("region", f"{stats['region']} by {stats['placement']} tokens "
                       f"(reference: {stats['reference']})"),
            ("expected winners", ", ".join(stats["expected_winners"])),
            ("why", stats["why"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
