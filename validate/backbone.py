"""The embedded backbone: a small character-level Llama pretrained by us on a mixed task corpus.

Hub weights cannot be downloaded here, so the validation's default model is built by
``probsft backbone build [--size tiny|medium] [--out DIR] [--steps N] [--seed S]`` (sizes:
:data:`SIZES`; tiny is the shipped one). The corpus mixes the tasks of
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
``from_pretrained``-loadable) plus ``backbone_config.json`` and ``build.json`` (time, data hash,
loss curve, final losses and the probe of each task); an interrupted build resumes after stage 1
(:func:`build`). The shipped copy lives in ``models/backbone/`` (:data:`SHIPPED`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from probsft.config import config_from_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write, json_text
from probsft.paths import MODELS
from probsft.validate.pretrain import corpus_sha256, loss_curve, pretrain

SHIPPED = MODELS / "backbone"
# The medium size's build (issue 24), shipped as built (float32, 35.7 MB): `--size medium
# --dial-steps 600 --save-at 25 50 75 100 150 ... 600`; its dial checkpoints are not shipped.
SHIPPED_MEDIUM = MODELS / "backbone_medium"
# Other backbones (the shipped doses, other seeds) and their grids: probsft.continuum.grids.

# The dial (probsft.validate.tasks.TRANSFORMS): each transformation's share of the pretraining
# documents. Doses were set on the probe's answer-token p only (README, "the dial"), never on a
# fine-tuning outcome; a transformation absent from the mix has dose 0.
DIAL_MIX: tuple[tuple[str, float], ...] = (
    ("spell_backward", 0.4), ("letter_jumble", 0.05),           # replay of stage 1
    ("t_sh1", 0.155), ("t_nov", 0.18), ("t_swp", 0.035), ("t_srt", 0.1), ("t_rol", 0.02),
    ("t_ror", 0.02), ("t_sh2", 0.03), ("t_sh3", 0.01))


# Named sizes (``probsft backbone build --size NAME``): the fields each sets on BackboneConfig's
# defaults; "tiny" is the defaults, the shipped backbone. Parameters with the char vocab (100):
#   tiny    hidden 128, 4 layers, 4 heads, MLP 352      829,568 (3.3 MB float32)
#   medium  hidden 384, 5 layers, 6 heads, MLP 1024   8,928,384 (35.7 MB float32; 10.8x tiny)
# "medium" (issue 24) keeps the tiny's data, steps and batches; its learning rates are a third of
# the tiny's (nanoGPT's 10.7M char-level model trains at 1e-3). Build estimate at one thread: 56.5
# CPU-min (benchmarks/bench_backbone.py --size medium --threads 1: 3.9 s per stage-1 step, 2.0 s per
# dial step), 64-76 min scaled as the tiny's (estimated 7.9-9.3, built in 10.6): docs/validation.md.
SIZES: dict[str, dict] = {
    "tiny": {},
    "medium": dict(hidden_size=384, layers=5, heads=6, intermediate_size=1024, lr=1e-3,
                   dial_lr=2e-3 / 3),
}


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 352
    max_position: int = 256
    # stage 1: English spelling and unscrambling (it learns to copy and reorder characters)
    steps: int = 700
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    mix: tuple[tuple[str, float], ...] = (("spell_backward", 0.8), ("letter_jumble", 0.2))
    # stage 2, the dial: continued pretraining on the transformations at their doses
    dial_steps: int = 300
    dial_batch_size: int = 32
    dial_lr: float = 2e-3
    dial_mix: tuple[tuple[str, float], ...] = DIAL_MIX
    pool: int = 6000                 # distinct pretraining items per task
    threads: int = 1                 # torch threads (the build machine is shared)
    eos: bool = True                 # end documents with </s> (the SFT format) instead of a newline

    def __post_init__(self):
        from probsft.validate.tasks import TASKS

        for f in ("mix", "dial_mix"):
            object.__setattr__(self, f, tuple((str(k), float(v)) for k, v in getattr(self, f)))
        for name, w in self.mix + self.dial_mix:
            if name not in TASKS or w <= 0:
                raise ConfigError(f"backbone mix: bad entry {name!r}: {w}")
        for f in ("hidden_size", "layers", "heads", "steps", "batch_size", "pool", "threads",
                  "dial_batch_size"):
            if getattr(self, f) < 1:
                raise ConfigError(f"backbone {f} must be >= 1")
        if self.dial_steps < 0:
            raise ConfigError("backbone dial_steps must be >= 0")
        if not (0 < self.lr < 1 and 0 < self.dial_lr < 1):
            raise ConfigError("backbone lr must lie in (0, 1)")

    @classmethod
    def from_dict(cls, d: dict) -> "BackboneConfig":
        return config_from_dict(cls, d)


def size_config(size: str = "tiny", **over) -> BackboneConfig:
    """The BackboneConfig of the named size (:data:`SIZES`) with the fields ``over`` replaced."""
    if size not in SIZES:
        raise ConfigError(f"unknown backbone size {size!r}; sizes: {', '.join(SIZES)}")
    return BackboneConfig(**{**SIZES[size], **over})


def document(record: dict, cfg: BackboneConfig) -> str:
    """One pretraining document: prompt + response + ``</s>`` (or a newline when ``cfg.eos`` is off).

    The character tokenizer matches ``</s>`` as its eos token, as the SFT data's eos id."""
    from probsft.validate.tiny import SPECIAL_TOKENS

    return record["prompt"] + record["response"] + (SPECIAL_TOKENS[2] if cfg.eos else "\n")


def corpus(cfg: BackboneConfig, mix=None) -> dict[str, list[str]]:
    """The pretraining documents of each task in ``mix`` (default: stage 1's; pretrain split only)."""
    from probsft.validate.tasks import TASKS, sample

    return {name: [document(r, cfg)
                   for r in sample(TASKS[name], "pretrain", cfg.pool, cfg.seed,
                                   unique=TASKS[name].pretrain_unique)]
            for name, _ in (cfg.mix if mix is None else mix)}


STAGE1 = "stage1"     # <out>/stage1/: the stage-1 model of an unfinished build, its resume point
DIAL_FIELDS = ("dial_steps", "dial_batch_size", "dial_lr", "dial_mix", "threads")  # not stage 1's


def stage1_key(cfg: BackboneConfig, docs) -> dict:
    """What stage 1's model is a function of: the config less the dial's fields (and threads) and
    the sha256 of stage 1's documents. A saved stage 1 with an equal key is resumed from."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in DIAL_FIELDS}
    key = {"config": config, "data_sha256": corpus_sha256({name: docs[name] for name, _ in cfg.mix})}
    return json.loads(json_text(key, digits=None))                      # tuples as lists, as saved


def _saved_stage1(folder: Path, key: dict) -> dict | None:
    """The record (key + losses) of the stage 1 saved in ``folder`` if it matches ``key``, else None."""
    try:
        saved = json.loads((folder / "stage1.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if {k: saved.get(k) for k in key} == key else None


def build(cfg: BackboneConfig, out: Path, progress: bool = True, probe_n: int = 128, docs=None,
          probe_sets=None, device: str = "cpu", stage1=None, save_at=()) -> dict:
    """Pretrain the backbone of ``cfg`` in two stages and save it to ``out``; the build record.

    Stage 1 (``steps`` on ``mix``: English spelling/unscrambling) teaches the model to copy and
    reorder characters; stage 2, the dial (``dial_steps`` on ``dial_mix``), continues on the
    transformations at their doses, with a replay of stage 1's tasks. ``stage1``: a folder holding
    a stage-1 result of the same config (the previous backbone, ``probsft backbone build
    --stage1``) to start stage 2 from instead of pretraining it again.
    Resumable: stage 1's model is saved to ``out/stage1/`` (with its :func:`stage1_key` and losses
    in ``stage1.json``) before the dial starts, and a build that finds a matching one there starts
    from it: the same weights and record as an uninterrupted build. The folder is removed when the
    build is complete.
    ``docs`` ({task: [text]}, both stages' tasks) and ``probe_sets`` ({task: {split: records}})
    replace the generated corpus and probe data (the GPU benchmark reads them from files).
    ``save_at``: dial steps (0 = the stage-1 model, before the dial) at which the model is also
    saved, as ``out/dial_step_<k>/``, with its dial probe in the build record's ``checkpoints``:
    one pretraining run read at several points, the same task at several capability positions
    (saving and probing never change the run: the final model is the same).
    The record (``build.json``) holds the parameter count, ``data_sha256`` (probsft.validate.
    pretrain.corpus_sha256 of both stages' documents), the final losses, ``loss_curve`` (the mean
    loss of every LOSS_EVERY steps of each stage), the seconds and the dial probe; the config is
    ``backbone_config.json``.
    """
    from probsft.files import atomic_dir
    from probsft.validate.pretrain import LOSS_EVERY
    from probsft.validate.tasks import ALPHABET
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    out = Path(out)
    save_at = sorted(set(save_at))
    if any(not 0 <= k <= cfg.dial_steps for k in save_at):
        raise ConfigError(f"--save-at steps must lie in [0, {cfg.dial_steps}] (the dial's steps)")
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    tok = build_char_tokenizer(ALPHABET, model_max_length=cfg.max_position)
    model = tiny_llama(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, cfg.seed,
                       cfg.max_position, cfg.intermediate_size)
    model.to(device)
    if docs is None:
        docs = {**corpus(cfg), **corpus(cfg, cfg.dial_mix)}
    record = {"threads": cfg.threads, "params": sum(p.numel() for p in model.parameters()),
              "data_sha256": corpus_sha256(docs)}
    curve = {"every": LOSS_EVERY}
    key = stage1_key(cfg, docs)
    saved = _saved_stage1(Path(stage1 or out / STAGE1), key)       # its losses, when it has them
    resume = stage1 is None and saved is not None
    if resume:
        record["resumed"] = f"after stage 1 ({out / STAGE1})"
    if stage1 is None and not resume:
        losses = pretrain(model, tok, docs, cfg.mix, cfg.steps, cfg.batch_size, cfg.lr, cfg,
                          cfg.seed, progress, "pretrain backbone (stage 1)", device)
        with atomic_dir(out / STAGE1) as tmp:                   # whole or not at all
            model.save_pretrained(tmp)
            atomic_write(tmp / "stage1.json", json_text({**key, "losses": losses}, 1, digits=None))
    else:
        from transformers import AutoModelForCausalLM

        model.load_state_dict(AutoModelForCausalLM.from_pretrained(
            stage1 or out / STAGE1, dtype=torch.float32).state_dict())
        if stage1 is not None:
            record["stage1_from"] = str(stage1)
        losses = saved["losses"] if saved else None
    if losses:
        record["stage1_final_loss"] = sum(losses[-20:]) / len(losses[-20:])
        curve["stage1"] = loss_curve(losses)
    checkpoints = {}

    def save_checkpoint(k: int) -> None:
        if k in save_at:
            folder = out / f"dial_step_{k}"
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            checkpoints[str(k)] = dial_report(model, tok, probe_n, probe_sets)

    save_checkpoint(0)
    if cfg.dial_steps:
        losses = pretrain(model, tok, docs, cfg.dial_mix, cfg.dial_steps, cfg.dial_batch_size,
                          cfg.dial_lr, cfg, cfg.seed + 1, progress, "pretrain backbone (dial)",
                          device, on_step=save_checkpoint if save_at else None)
        record["dial_final_loss"] = sum(losses[-20:]) / len(losses[-20:])
        curve["dial"] = loss_curve(losses)
    record["loss_curve"] = curve
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    atomic_write(out / "backbone_config.json", json_text(dataclasses.asdict(cfg), 1, digits=None))
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["dial"] = dial_report(model, tok, probe_n, probe_sets)
    if checkpoints:
        record["checkpoints"] = checkpoints
    atomic_write(out / "build.json", json_text(record, indent=1))
    shutil.rmtree(out / STAGE1, ignore_errors=True)             # complete: nothing to resume
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


def positions_near(dial: dict, targets) -> tuple[str, ...]:
    """One dial task per target p, in order: the not yet chosen task of ``dial`` ({task:
    {"answer_p": p, ...}}, a build record's probe) whose answer p lies nearest the target."""
    if len(targets) > len(dial):
        raise ConfigError(f"{len(targets)} targets but only {len(dial)} tasks to place on them")
    chosen = []
    for t in targets:
        chosen.append(min((name for name in dial if name not in chosen),
                          key=lambda name: abs(dial[name]["answer_p"] - t)))
    return tuple(chosen)


def load(path=None):
    """(model, tokenizer) of a backbone folder (default: the shipped one), through the one model
    loader (probsft.validate.loading: a bad folder is one clear UserError)."""
    from probsft.validate.loading import load_model_and_tokenizer

    path = Path(path) if path else SHIPPED
    if path == SHIPPED and not (path / "config.json").exists():
        raise ConfigError(f"no backbone at {path}; build one with `probsft backbone build`")
    return load_model_and_tokenizer(path)
