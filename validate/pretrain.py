"""Causal-LM pretraining of a backbone stage (probsft.validate.backbone) and what its record keeps.

:func:`pretrain` runs one stage: AdamW (betas 0.9/0.98), linear warm-up then cosine decay, gradient
clipping at 1.0, the LM loss on every non-padding token of documents drawn by a mix. The record of
a build keeps the corpus' hash (:func:`corpus_sha256`) and the loss curve (:func:`loss_curve`).

    >>> losses = pretrain(model, tok, docs, (("spell_backward", 1.0),), steps=10, batch_size=8,
    ...                   lr=3e-3, cfg=BackboneConfig(), seed=0)
"""

from __future__ import annotations

import hashlib
import json
import math
import random

import torch

from probsft.theory.objective import IGNORE_INDEX

LOSS_EVERY = 10          # the loss curve of build.json: the mean loss of every 10 steps


def pretrain(model, tok, docs, mix, steps, batch_size, lr, cfg, seed, progress=False, desc="",
             device="cpu", on_step=None) -> list[float]:
    """Causal-LM pretraining on documents drawn by ``mix``; returns the loss of every step.

    The batches are a pure function of ``seed`` (documents, shares, order). ``cfg`` gives
    ``warmup`` and ``weight_decay``. ``on_step(k)`` is called after the k-th optimizer step
    (k = 1..steps), with the model in eval mode (it may probe, not train)."""
    from tqdm.auto import tqdm

    names, weights = zip(*mix)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))
    model.train()
    losses = []
    for step in tqdm(range(steps), desc=desc, disable=not progress):
        warm = min(1.0, (step + 1) / cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        texts = [rng.choice(docs[rng.choices(names, weights)[0]]) for _ in range(batch_size)]
        seqs = [tok.encode(t) for t in texts]
        T = max(map(len, seqs))
        ids = torch.tensor([s + [tok.pad_token_id] * (T - len(s)) for s in seqs],
                           device=device)                                  # [B, T]
        labels = ids.masked_fill(ids == tok.pad_token_id, IGNORE_INDEX)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            model.eval()
            on_step(step + 1)
            model.train()
    model.eval()
    return losses


def corpus_sha256(docs: dict[str, list[str]]) -> str:
    """sha256 of the documents ({task: [text]}, tasks by name, each task's documents in order): equal
    hashes, equal pretraining data (the batches also depend on the mix and the seed)."""
    text = json.dumps({name: docs[name] for name in sorted(docs)}, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def loss_curve(losses: list[float], every: int = LOSS_EVERY) -> list[float]:
    """The mean loss of steps 1..every, every+1..2*every, ... (the last window may be shorter)."""
    return [sum(w) / len(w) for w in (losses[i:i + every] for i in range(0, len(losses), every))]
