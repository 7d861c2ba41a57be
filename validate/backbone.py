"""The embedded backbone: a small character-level Llama pretrained by us on a mixed task corpus.

Hub weights cannot be downloaded here, so the validation's default model is built by
``probsft backbone build [--out DIR] [--steps N] [--seed S]``. The corpus mixes the tasks of
probsft.validate.tasks by their exposure (``BackboneConfig.mix``): heavy ``spell_backward``
(model-strong), light ``letter_jumble`` (intermediate), no ``figlet`` (model-weak), all from the
*pretrain* split, which never overlaps the SFT train / held-out splits.

Pretraining documents are ``prompt + response + "</s>"``, the SFT format of probsft.validate.data,
with the LM loss on every token (``BackboneConfig.eos``). The end-of-response token matters because
the answers are short: with ``eos=False`` (documents end in a newline, as the first shipped backbone)
the backbone gives ``</s>`` p ≈ 1e-6, a fifth to a third of the supervised tokens, and in the
measured grid every NLL fine-tune spent its update on learning it (README, "format ablation"): the
objectives then differ by how they treat one never-seen format token, not by the continuum.

The result is a Hugging Face folder (``LlamaForCausalLM`` safetensors + tokenizer,
``from_pretrained``-loadable) plus ``backbone_config.json`` and ``build.json`` (time, final loss and
the probe of each task). The shipped copy lives in ``models/backbone/`` (:data:`SHIPPED`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path

import torch

from probsft.config import config_from_dict
from probsft.errors import ConfigError
from probsft.paths import MODELS

SHIPPED = MODELS / "backbone"

# The dial (probsft.validate.tasks.TRANSFORMS): each transformation's share of the pretraining
# documents. Doses were set on the probe's answer-token p only (README, "the dial"), never on a
# fine-tuning outcome; a transformation absent from the mix has dose 0.
DIAL_MIX: tuple[tuple[str, float], ...] = (
    ("t_cpy", 0.30), ("t_rev", 0.32), ("t_swp", 0.16), ("t_sh1", 0.08), ("t_rol", 0.04),
    ("t_srt", 0.02), ("t_ror", 0.01), ("t_sh2", 0.005), ("t_nov", 0.0025))


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 176
    max_position: int = 256
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    mix: tuple[tuple[str, float], ...] = DIAL_MIX
    pool: int = 6000                 # distinct pretraining items per task
    threads: int = 1                 # torch threads (the build machine is shared)
    eos: bool = True                 # end documents with </s> (the SFT format) instead of a newline

    def __post_init__(self):
        from probsft.validate.tasks import TASKS

        object.__setattr__(self, "mix", tuple((str(k), float(v)) for k, v in self.mix))
        for name, w in self.mix:
            if name not in TASKS or w <= 0:
                raise ConfigError(f"backbone mix: bad entry {name!r}: {w}")
        for f in ("hidden_size", "layers", "heads", "steps", "batch_size", "pool", "threads"):
            if getattr(self, f) < 1:
                raise ConfigError(f"backbone {f} must be >= 1")
        if not 0 < self.lr < 1:
            raise ConfigError("backbone lr must lie in (0, 1)")

    @classmethod
    def from_dict(cls, d: dict) -> "BackboneConfig":
        return config_from_dict(cls, d)


def document(record: dict, cfg: BackboneConfig) -> str:
    """One pretraining document: prompt + response + ``</s>`` (or a newline when ``cfg.eos`` is off).

    The character tokenizer matches ``</s>`` as its eos token, as the SFT data's eos id."""
    from probsft.validate.tiny import SPECIAL_TOKENS

    return record["prompt"] + record["response"] + (SPECIAL_TOKENS[2] if cfg.eos else "\n")


def corpus(cfg: BackboneConfig) -> dict[str, list[str]]:
    """The pretraining documents of each task in the mix (pretrain split only)."""
    from probsft.validate.tasks import TASKS, sample

    return {name: [document(r, cfg)
                   for r in sample(TASKS[name], "pretrain", cfg.pool, cfg.seed,
                                   unique=TASKS[name].pretrain_unique)]
            for name, _ in cfg.mix}


def build(cfg: BackboneConfig, out: Path, progress: bool = True, probe_n: int = 128, docs=None,
          probe_sets=None, device: str = "cpu") -> dict:
    """Pretrain the backbone of ``cfg`` and save it to ``out``; returns the build record.

    ``docs`` ({task: [text]}) and ``probe_sets`` ({task: records}) replace the generated corpus and
    probe data (the GPU benchmark reads them from files, without reasoning_gym).
    """
    from tqdm.auto import tqdm

    from probsft.validate.tasks import ALPHABET
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    torch.set_num_threads(cfg.threads)
    # Once the model predicts confidently, softmax underflows into denormal floats, which the CPU
    # handles ~20x slower (measured: 0.05 -> 0.9 s of CPU per step); flushing them to 0 changes no
    # result that matters and keeps the build fast.
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    tok = build_char_tokenizer(ALPHABET, model_max_length=cfg.max_position)
    model = tiny_llama(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, cfg.seed,
                       cfg.max_position, cfg.intermediate_size)
    model.to(device)
    docs = docs if docs is not None else corpus(cfg)
    names, weights = zip(*cfg.mix)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))
    model.train()
    losses = []
    for step in tqdm(range(cfg.steps), desc="pretrain backbone", disable=not progress):
        warm = min(1.0, (step + 1) / cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        texts = [rng.choice(docs[rng.choices(names, weights)[0]]) for _ in range(cfg.batch_size)]
        seqs = [tok.encode(t) for t in texts]
        T = max(map(len, seqs))
        ids = torch.tensor([s + [tok.pad_token_id] * (T - len(s)) for s in seqs],
                           device=device)                                  # [B, T]
        labels = ids.masked_fill(ids == tok.pad_token_id, -100)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "backbone_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    record = {"seconds": round(time.perf_counter() - start, 1), "threads": cfg.threads,
              "params": sum(p.numel() for p in model.parameters()),
              "final_loss": sum(losses[-20:]) / len(losses[-20:]),
              "dial": dial_report(model, tok, probe_n, probe_sets)}
    (out / "build.json").write_text(json.dumps(record, indent=1))
    return record


def dial_report(model, tok, n: int = 128, probe_sets=None) -> dict:
    """{task: {answer_p, exact_match}} of every dial task: the probe's answer-token mean p on ``n``
    SFT-train items and greedy held-out exact match on ``n`` held-out items (the cheap probe the
    doses were set with, and the record of a build).

    ``probe_sets`` ({task: {"train": records, "heldout": records}}) replaces generated items."""
    from probsft.validate.evaluate import evaluate
    from probsft.validate.probe import probe
    from probsft.validate.tasks import DIAL, TASKS, sample

    out = {}
    for name in (probe_sets or DIAL):
        sets = probe_sets[name] if probe_sets else {
            split: sample(TASKS[name], split, n, 0) for split in ("train", "heldout")}
        stats = probe(model, tok, sets["train"], batch_size=64, placement="answer")
        summary, _ = evaluate(model, tok, sets["heldout"], max_new_tokens=12, batch_size=64)
        out[name] = {"answer_p": round(stats["answer_mean_p"], 4),
                     "exact_match": round(summary["eval/exact_match"], 4)}
    return out


def load(path=None):
    """(model, tokenizer) of a backbone folder (default: the shipped one), via from_pretrained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path) if path else SHIPPED
    if not (path / "config.json").exists():
        raise ConfigError(f"no backbone at {path}; build one with `probsft backbone build --out {path}`")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
