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

Output folder: ``config.json`` (saved first, with the data file's sha256), ``metrics.jsonl`` (one
line per logged step), ``metrics.csv`` (the same log, written at the end), ``metrics.json`` (final),
``checkpoint.pt`` (every ``checkpoint_every`` steps), ``model/`` (``save_pretrained`` of model and
tokenizer, written whole or not at all). The folder is locked for the run (a second run into it
fails at once); a run of another config in it (objective, data content, model, ...) is never resumed
or trained over without ``overwrite`` (``--overwrite``), and the output may not overlap the input
model folder. Launch on several GPUs with
``torchrun --nproc-per-node 8 -m probsft.cli finetune ...`` or ``accelerate launch`` (DDP), adding
``--fsdp`` to shard parameters, gradients and optimizer state with torch's ``fully_shard``.

    >>> from probsft.validate.train import FinetuneConfig, finetune
    >>> finetune(FinetuneConfig(model="Qwen/Qwen2.5-Math-1.5B", data="math.jsonl", objective="-p",
    ...                         output="runs/p", batch_size=4, grad_accum=16))
"""

from __future__ import annotations

import contextlib
import copy
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
from probsft.errors import ConfigError
from probsft.files import atomic_dir, locked_output
from probsft.validate import store
from probsft.theory.losses import deferred_checks
from probsft.validate.accumulate import accumulate_gradients_async, step_stats
from probsft.validate.data import collate, read_jsonl, tokenize_sft
from probsft.validate.loading import load_model_and_tokenizer
from probsft.validate.run_config import DEVICES, OPTIMIZERS, FinetuneConfig  # noqa: F401 (their home)
from probsft.validate.run_folder import (check_saved_run, load_checkpoint,
                                        refuse_input_model_folder, with_data_hash)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one), >= 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (this rank's GPU, from LOCAL_RANK)."""
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
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

    Before any work, a run into ``cfg.output`` locks the folder (a second run into it fails at once),
    refuses an output that overlaps the input model folder, and refuses to resume or retrain over a
    run of another config (objective, data content, model, ...) unless ``cfg.overwrite``.
    """
    if examples is None and cfg.data is not None:
        cfg = with_data_hash(cfg)
    if cfg.output is None or int(os.environ.get("RANK", "0")) != 0:
        return _finetune(cfg, model, tokenizer, progress, examples, callback)
    refuse_input_model_folder(cfg)
    with locked_output(cfg.output, "--output") as out:
        check_saved_run(cfg, out)
        return _finetune(cfg, model, tokenizer, progress, examples, callback)


def _finetune(cfg, model, tokenizer, progress, examples, callback) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    start_time = time.perf_counter()
    device = pick_device(cfg.device)
    rank, world = _init_distributed(device)
    out = Path(cfg.output) if cfg.output else None
    main = rank == 0 and out is not None
    if examples is None and cfg.data is None:
        raise ConfigError("finetune: set cfg.data (a JSONL path) or pass examples=")
    records = read_jsonl(cfg.data) if examples is None else None   # bad data fails before loading
    if model is None:
        model, tokenizer = load_model_and_tokenizer(cfg.model)
    if tokenizer is None:
        raise ConfigError("finetune: pass the tokenizer together with the model")
    if examples is None:
        examples = tokenize_sft(records, tokenizer, cfg.max_length, report=rank == 0)
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
        state = load_checkpoint(ckpt, device, cfg)
    if main:
        store.atomic_write_json(out / "config.json", store.config_to_dict(cfg), digits=None)
    obj = probsft.objective(state["objective"]) if state else cfg.parsed_objective
    if obj.needs_probe:     # Q<pct> (paper §5), alpha(auto): fixed once from the base model's p
        from probsft.validate.probe import token_probs

        obj = obj.resolve(token_probs(model, examples, tokenizer.pad_token_id).numpy())
        if main:            # the saved config replays the run: its objective is the resolved one
            store.atomic_write_json(out / "config.json",
                                    {**store.config_to_dict(cfg), "objective": obj.spec},
                                    digits=None)
    G = cfg.batch_size * cfg.grad_accum * world
    if len(examples) < G:
        raise ConfigError(f"{len(examples)} examples are fewer than one global batch of {G} "
                          "(batch_size x grad_accum x ranks)")
    total_steps = cfg.max_steps or cfg.epochs * (len(examples) // G)
    torch.manual_seed(cfg.seed)
    reference = None
    if obj.needs_reference:      # ASFT: a frozen copy of the base model (before any resumed state)
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    if world > 1 and cfg.fsdp:
        model = shard_model(model)                 # parameters become sharded DTensors
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg, device)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps),
                                                total_steps)
    step, skipped, tokens_seen = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        if reference is not None:           # the anchor is training state too
            if "reference" not in state:
                raise ConfigError(f"{ckpt} holds no base-model anchor for {obj.spec}; pass "
                                  "--no-resume to start the run over")
            reference.load_state_dict(state["reference"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, skipped, tokens_seen = state["step"], state["skipped"], state["tokens_seen"]
        _set_rng_state(state["rng"])
        if main:
            store.truncate_jsonl(out / "metrics.jsonl", step)
    elif main:
        store.atomic_write(out / "metrics.jsonl", b"")
    train_model = model
    if world > 1 and not cfg.fsdp:
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
        with deferred_checks() as checks:        # the loss's checks, read with the step's stats
            sums = accumulate_gradients_async(train_model, batches, obj, fused=cfg.fused,
                                              autocast=autocast, log=log_now, reference=reference)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm   # FSDP: a DTensor
        values = torch.cat([norm.double().reshape(1).to(sums.device),         # one host sync
                            checks.flag(sums.device).double().reshape(1), sums]).tolist()
        if not values[1]:
            checks.raise_failed()
        grad_norm, stats = values[0], step_stats(values[2:])   # sums: [S, N, V, log terms...]
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
                "config": store.config_to_dict(cfg),   # everything a bitwise resume needs,
                **({"reference": reference.state_dict()} if reference is not None else {})})
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
    full_state = None
    if cfg.save_model and out is not None and cfg.fsdp and world > 1:   # every rank gathers
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full_state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                          cpu_offload=True))
    if main:
        if cfg.save_model:
            with atomic_dir(out / "model") as tmp:
                model.save_pretrained(tmp, state_dict=full_state)
                tokenizer.save_pretrained(tmp)
        store.atomic_write_json(out / "metrics.json", metrics)
        store.atomic_write_csv(out / "metrics.csv", store.read_jsonl_records(out / "metrics.jsonl"))
        if ckpt.exists():
            ckpt.unlink()                         # finished: the checkpoint is no longer needed
    return metrics


def shard_model(model):
    """FSDP2: ``fully_shard`` each transformer block (the model's ``_no_split_modules`` classes),
    then the root (embeddings, final norm, LM head). Gradients come out reduce-scattered and
    averaged over ranks, as under DDP (probsft.validate.accumulate scales them alike)."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model
