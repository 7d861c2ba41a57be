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
from probsft.files import atomic_write
from probsft.paths import MODELS
from probsft.theory.objective import IGNORE_INDEX

SHIPPED = MODELS / "backbone"


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 352
    max_position: int = 256
    steps: int = 700
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    mix: tuple[tuple[str, float], ...] = (("spell_backward", 0.8), ("letter_jumble", 0.2))
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

    from probsft.validate.probe import probe
    from probsft.validate.tasks import ALPHABET, TASKS, sample
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    torch.set_num_threads(cfg.threads)
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
        labels = ids.masked_fill(ids == tok.pad_token_id, IGNORE_INDEX)
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
    atomic_write(out / "backbone_config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
    if probe_sets is None:
        probe_sets = {name: sample(TASKS[name], "train", probe_n, 0) for name in TASKS}
    probes = {name: probe(model, tok, recs, batch_size=64, placement="answer")
              for name, recs in probe_sets.items()}
    record = {"seconds": round(time.perf_counter() - start, 1), "threads": cfg.threads,
              "params": sum(p.numel() for p in model.parameters()),
              "final_loss": sum(losses[-20:]) / len(losses[-20:]),
              "probe_mean_p": {k: v["mean_p"] for k, v in probes.items()},
              "probe_answer_mean_p": {k: v["answer_mean_p"] for k, v in probes.items()},
              "probe_region": {k: v["region"] for k, v in probes.items()}}
    atomic_write(out / "build.json", json.dumps(record, indent=1))
    return record


def load(path=None):
    """(model, tokenizer) of a backbone folder (default: the shipped one), through the one model
    loader (probsft.validate.loading: a bad folder is one clear UserError)."""
    from probsft.validate.loading import load_model_and_tokenizer

    path = Path(path) if path else SHIPPED
    if path == SHIPPED and not (path / "config.json").exists():
        raise ConfigError(f"no backbone at {path}; build one with `probsft backbone build`")
    return load_model_and_tokenizer(path)
