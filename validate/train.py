"""The fine-tune runner: any causal LM, any registry objective, resumable, DDP-ready.

``finetune(cfg)`` trains ``AutoModelForCausalLM.from_pretrained(cfg.model)`` on the SFT JSONL
``cfg.data`` with the objective ``probsft.objective(cfg.objective)``, following the authors' recipe
(paper notes §3.2): AdamW(betas 0.9/0.95, weight decay 0.01 on all parameters), cosine schedule with
warm-up ratio 0.1, gradient clipping at 1.0, a step skipped when the gradient norm is non-finite
(counted in ``train/skipped_nonfinite``), bf16 autocast on GPU. The loss of a step is the mean of
f(p) over the counted tokens of the whole global batch, exactly, for any number of micro-batches and
ranks (see probsft.validate.accumulate, which also relates it to the authors' per-micro-batch mean).
Quantile thresholds (``nll@p>=Q90``) and probe-set parameters (``alpha(auto)``) are resolved on the
base model's response-token p before training; config.json then holds the resolved objective.

Data order is a pure function of (seed, step): step s takes the global batch
``perm_epoch[s*G:(s+1)*G]``, G = batch_size*grad_accum*world_size, and rank r takes micro-batches
``m*W + r``. So a resumed run sees exactly the batches an uninterrupted run sees; with the model,
optimizer, scheduler and RNG states restored from ``<output>/checkpoint.pt`` it ends bitwise equal on CPU.

Every logged step also records ``train/nll`` (the NLL of the same response tokens) and
``train/wshare_p<0.1`` ... (the share of the gradient weight W_f by p bucket), probsft.validate.logstats.

Output folder: ``config.json`` (saved first), ``metrics.jsonl`` (one line per logged step),
``metrics.csv`` (the same log, written at the end), ``metrics.json`` (final), ``checkpoint.pt`` (every ``checkpoint_every`` steps), ``model/``
(``save_pretrained`` of model and tokenizer). Launch on several GPUs with
``torchrun --nproc-per-node 8 -m probsft.cli finetune ...`` or ``accelerate launch``.

    >>> from probsft.validate.train import FinetuneConfig, finetune
    >>> finetune(FinetuneConfig(model="Qwen/Qwen2.5-Math-1.5B", data="math.jsonl", objective="-p",
    ...                         output="runs/p", batch_size=4, grad_accum=16))
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import probsft
from probsft.errors import ConfigError, UserError
from probsft.validate import store
from probsft.validate.accumulate import accumulate_gradients
from probsft.validate.data import collate, read_jsonl, tokenize_sft


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tune; rejects bad values at construction, loads strictly with ``store.load_config``."""

    model: str                        # hub name or local path (a label when a model is passed in)
    data: str | None = None           # SFT JSONL (prompt/response or messages); None: pass examples
    objective: str = "nll"            # any probsft spec
    output: str | None = None         # results folder; None writes nothing (in-process use)
    max_steps: int | None = None      # None: `epochs` passes over the data
    epochs: int = 1
    lr: float = 5e-5
    batch_size: int = 4               # micro-batch per rank
    grad_accum: int = 1               # micro-batches per rank per optimizer step
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float = 1.0        # <= 0 disables clipping (the norm is still logged)
    seed: int = 0
    max_length: int = 1024
    bf16: bool | None = None          # None: autocast bf16 exactly when running on CUDA
    fused: bool = False               # probsft.fused_linear_loss on the last hidden states
    gradient_checkpointing: bool = False   # recompute activations in backward (authors: on)
    save_model: bool = True
    log_every: int = 10
    checkpoint_every: int = 0         # 0: no checkpoints
    resume: bool = True               # continue from <output>/checkpoint.pt when present
    device: str = "auto"              # auto | cpu | cuda

    def __post_init__(self):
        probsft.objective(self.objective)                    # SpecError on a bad spec
        positive = ("epochs", "batch_size", "grad_accum", "max_length", "log_every")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ConfigError(f"max_steps must be a positive integer or None, got {self.max_steps!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("weight_decay must be >= 0 and betas two numbers in [0, 1)")
        if self.checkpoint_every < 0:
            raise ConfigError("checkpoint_every must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")


def _device(cfg) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is available")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _init_distributed(device) -> tuple[int, int]:
    """(rank, world); joins the process group torchrun/accelerate set up through the environment."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_model_and_tokenizer(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    except OSError as err:
        raise UserError(f"cannot load model {name!r}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def micro_batches_for_step(examples, step, cfg, rank, world, pad_id):
    """This rank's micro-batches of optimizer step ``step`` (a pure function of seed and step)."""
    G = cfg.batch_size * cfg.grad_accum * world
    per_epoch = len(examples) // G
    epoch, within = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    idx = torch.randperm(len(examples), generator=g)[within * G:(within + 1) * G].tolist()
    B = cfg.batch_size
    return [collate([examples[i] for i in idx[(m * world + rank) * B:(m * world + rank + 1) * B]],
                    pad_id) for m in range(cfg.grad_accum)]


def _rng_state():
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def finetune(cfg: FinetuneConfig, model=None, tokenizer=None, progress: bool = True,
             examples=None, callback=None) -> dict:
    """Run the fine-tune of ``cfg``; returns the final metrics (also saved when ``cfg.output``).

    ``model``/``tokenizer`` (optional) are trained in place instead of loading ``cfg.model``;
    ``examples`` (optional) are pre-tokenised examples used instead of reading ``cfg.data``;
    ``callback(step, record)`` is called after every optimizer step (raise to stop a run).
    """
    from transformers import get_cosine_schedule_with_warmup

    start_time = time.perf_counter()
    device = _device(cfg)
    rank, world = _init_distributed(device)
    out = Path(cfg.output) if cfg.output else None
    main = rank == 0 and out is not None
    if model is None:
        model, tokenizer = load_model_and_tokenizer(cfg.model)
    if tokenizer is None:
        raise ConfigError("finetune: pass the tokenizer together with the model")
    if examples is None:
        if cfg.data is None:
            raise ConfigError("finetune: set cfg.data (a JSONL path) or pass examples=")
        examples = tokenize_sft(read_jsonl(cfg.data), tokenizer, cfg.max_length, report=rank == 0)
    model.to(device)
    if cfg.gradient_checkpointing:       # transformers >= 5.2x renames it activation checkpointing
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ckpt = out / "checkpoint.pt" if out is not None else None
    state = None
    if ckpt is not None and cfg.resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["config"] != store.config_to_dict(cfg):
            raise ConfigError(f"{ckpt} belongs to a run with another config; pass --no-resume or "
                              "choose another --output")
    if main:
        store.atomic_write_json(out / "config.json", store.config_to_dict(cfg))
    obj = probsft.objective(state["objective"] if state else cfg.objective)
    if obj.needs_probe:     # Q<pct> (paper §5), alpha(auto): fixed once from the base model's p
        from probsft.validate.probe import token_probs

        obj = obj.resolve(token_probs(model, examples, tokenizer.pad_token_id).numpy())
        if main:            # the saved config replays the run: its objective is the resolved one
            store.atomic_write_json(out / "config.json",
                                    {**store.config_to_dict(cfg), "objective": obj.spec})
    G = cfg.batch_size * cfg.grad_accum * world
    if len(examples) < G:
        raise ConfigError(f"{len(examples)} examples are fewer than one global batch of {G} "
                          "(batch_size x grad_accum x ranks)")
    total_steps = cfg.max_steps or cfg.epochs * (len(examples) // G)
    torch.manual_seed(cfg.seed)
    # The fused CUDA AdamW (HF Trainer's default optimizer there); the CPU keeps the reference one.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                  weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps),
                                                total_steps)
    step, skipped, tokens_seen = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, skipped, tokens_seen = state["step"], state["skipped"], state["tokens_seen"]
        _set_rng_state(state["rng"])
        if main:
            store.truncate_jsonl(out / "metrics.jsonl", step)
    elif main:
        store.atomic_write(out / "metrics.jsonl", b"")
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = device.type == "cuda" if cfg.bf16 is None else cfg.bf16
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 \
        else contextlib.nullcontext
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=not progress or rank != 0,
               desc=f"finetune {obj.spec}", dynamic_ncols=True)
    record, run_tokens, loop_start = {}, 0, time.perf_counter()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    while step < total_steps:
        batches = [{k: v.to(device) for k, v in b.items()}
                   for b in micro_batches_for_step(examples, step, cfg, rank, world, pad_id)]
        log_now = (step + 1) % cfg.log_every == 0 or step + 1 == total_steps
        stats = accumulate_gradients(train_model, batches, obj, fused=cfg.fused, autocast=autocast,
                                     log=log_now)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        if math.isfinite(grad_norm):
            optimizer.step()
        else:                                    # the authors skip the update on a non-finite norm
            skipped += 1
        lr = scheduler.get_last_lr()[0]
        with warnings.catch_warnings():          # torch warns when a skipped step precedes this
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += stats.valid
        run_tokens += stats.valid
        record = {"step": step, "train/loss": stats.loss, "train/counted_tokens": stats.counted,
                  "train/valid_tokens": stats.valid, "train/grad_norm": grad_norm, "train/lr": lr,
                  "train/skipped_nonfinite": skipped, **(stats.log or {})}
        if main and (step % cfg.log_every == 0 or step == total_steps):
            store.append_jsonl(out / "metrics.jsonl", record)
        if main and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
            store.atomic_torch_save(ckpt, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "skipped": skipped,
                "tokens_seen": tokens_seen, "rng": _rng_state(), "objective": obj.spec,
                "config": store.config_to_dict(cfg)})   # everything a bitwise resume needs
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss:.4f}", skipped=skipped)
        if callback is not None:
            callback(step, record)
    bar.close()
    elapsed = time.perf_counter() - loop_start
    metrics = {**record, "train/steps": step, "train/tokens_seen": tokens_seen,
               "train/tokens_per_s": run_tokens / elapsed if elapsed > 0 else None,
               "objective": obj.spec, "objective_requested": cfg.objective,
               "data/examples": len(examples),
               "data/truncated": getattr(examples, "n_truncated", 0),
               "wall_s": time.perf_counter() - start_time}
    if main:
        if cfg.save_model:
            model.save_pretrained(out / "model")
            tokenizer.save_pretrained(out / "model")
        store.atomic_write_json(out / "metrics.json", metrics)
        store.atomic_write_csv(out / "metrics.csv", store.read_jsonl_records(out / "metrics.jsonl"))
        if ckpt.exists():
            ckpt.unlink()                         # finished: the checkpoint is no longer needed
    return metrics


def config_from_args(args) -> FinetuneConfig:
    """A FinetuneConfig from CLI args: ``--config JSON`` first, explicit flags override it."""
    base = store.config_to_dict(store.load_config(FinetuneConfig, args.config)) if args.config else {}
    flags = {k: v for k, v in vars(args).items()
             if k in {f.name for f in dataclasses.fields(FinetuneConfig)} and v is not None}
    merged = {**base, **flags}
    missing = [k for k in ("model", "data") if k not in merged]
    if missing:
        raise ConfigError(f"finetune needs --{' and --'.join(missing)} (or a --config that sets them)")
    return store.config_from_dict(FinetuneConfig, merged)


