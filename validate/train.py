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
import dataclasses
import json
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
from probsft.files import atomic_dir, locked_output, sha256_file
from probsft.validate import store
from probsft.theory.losses import deferred_checks
from probsft.validate.accumulate import accumulate_gradients_async, step_stats
from probsft.validate.data import collate, read_jsonl, tokenize_sft
from probsft.validate.loading import load_model_and_tokenizer


DEVICES = ("auto", "cpu", "cuda")


def _field(default, help: str, **metadata):
    """A config field with its command-line help (probsft.config.add_config_flags)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


# name -> (parameters, cfg, device) -> torch optimizer. AdamW is the paper's (the fused CUDA kernel,
# HF Trainer's default there; the CPU keeps the reference one); SGD with momentum 0.9 is the
# optimizer ablation of the validation grid.
OPTIMIZERS = {
    "adamw": lambda params, cfg, device: torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
        fused=device.type == "cuda"),
    "sgd": lambda params, cfg, device: torch.optim.SGD(
        params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tune; rejects bad values at construction, loads strictly with ``store.load_config``."""

    model: str = _field(dataclasses.MISSING, "hub name or local path of an AutoModelForCausalLM (a label when a "
                              "model is passed in)")
    data: str | None = _field(None, "SFT JSONL (prompt/response or messages); None: pass examples")
    objective: str = _field("nll", "objective spec, e.g. nll, -p, 'nll@p>=0.2', 'alpha(10)' (write "
                                   "--objective=-p for a spec starting with '-')")
    output: str | None = _field(None, "output folder (model, metrics, config, checkpoints); None "
                                      "writes nothing (in-process use)")
    max_steps: int | None = _field(None, "optimizer steps (default: `epochs` passes over the data)")
    epochs: int = _field(1, "passes over the data when max_steps is not set")
    lr: float = _field(5e-5, "peak learning rate (AdamW, cosine schedule)")
    batch_size: int = _field(4, "micro-batch per rank")
    grad_accum: int = _field(1, "micro-batches per rank per optimizer step")
    warmup_ratio: float = _field(0.1, "share of the steps spent warming up the learning rate")
    weight_decay: float = _field(0.01, "AdamW weight decay")
    betas: tuple[float, float] = _field((0.9, 0.95), "AdamW betas")
    optimizer: str = _field("adamw", "optimizer (a key of OPTIMIZERS: adamw, sgd)")
    max_grad_norm: float = _field(1.0, "gradient clipping norm; <= 0 disables clipping (the norm "
                                       "is still logged)")
    seed: int = _field(0, "seed of data order and initial RNG state")
    max_length: int = _field(1024, "tokens per example (longer ones are cut)")
    bf16: bool | None = _field(None, "autocast bf16 (default: exactly when running on CUDA)")
    fused: bool = _field(False, "chunked linear+f(p) loss: never materialise the logits")
    fsdp: bool = _field(False, "under torchrun: shard parameters, gradients and optimizer state "
                               "(torch fully_shard) instead of DDP")
    gradient_checkpointing: bool = _field(False, "recompute activations in the backward pass "
                                                 "(saves memory; the authors' setting)")
    save_model: bool = _field(True, "save the fine-tuned model into <output>/model")
    log_every: int = _field(10, "steps between metric lines")
    checkpoint_every: int = _field(0, "steps between checkpoints (0: none)")
    resume: bool = _field(True, "continue from <output>/checkpoint.pt when present")
    device: str = _field("auto", "where to train", choices=DEVICES)
    overwrite: bool = _field(False, "replace a run of another config already in --output (else "
                                    "refused)")
    data_sha256: str | None = _field(None, "content hash of `data`, recorded in config.json; when "
                                           "set, the data file must still have it")

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
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.data_sha256 is not None and (not isinstance(self.data_sha256, str)
                                             or len(self.data_sha256) != 64):
            raise ConfigError(f"data_sha256 must be 64 hex digits or null, got {self.data_sha256!r}")
        if self.fsdp and (self.fused or self.checkpoint_every):
            raise ConfigError("fsdp: --fused (the LM head is sharded outside the forward) and "
                              "checkpoint_every (sharded resume) are not supported yet")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")


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


# Config fields that steer a run without changing what it trains: a resumed run may change them.
RUN_CONTROL = ("output", "resume", "overwrite", "log_every", "checkpoint_every", "save_model")
# What a finished or interrupted run leaves in its output folder (--overwrite removes them).
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "metrics.csv", "metrics.json", "model")


def config_differences(saved: dict, current: dict) -> list[str]:
    """Fields in which two saved configs train differently (RUN_CONTROL ignored; the data file is
    compared by its content hash when both configs carry one, else by its path)."""
    a, b = dict(saved), dict(current)
    if _resolved_from(a.get("objective"), b.get("objective")):
        b["objective"] = a["objective"]        # alpha(auto) saved as the alpha it resolved to
    hashed = bool(a.get("data_sha256") and b.get("data_sha256"))
    for key in RUN_CONTROL + (("data",) if hashed else ("data_sha256",)):
        a.pop(key, None)
        b.pop(key, None)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _resolved_from(saved, current) -> bool:
    """True when ``saved`` is what the probe-set objective ``current`` (alpha(auto), Q<pct>
    thresholds) resolved to: config.json records the resolved objective, so a run resumes under the
    spec it was asked with."""
    from probsft.errors import SpecError

    if not (isinstance(saved, str) and isinstance(current, str)) or saved == current:
        return False
    try:
        want, got = probsft.objective(current), probsft.objective(saved)
    except SpecError:
        return False
    if not want.needs_probe or got.needs_probe or (got.interval is None) != (want.interval is None):
        return False
    if want.base.probe_params:                 # alpha(auto) -> alpha(a); alpha(0) is nll, alpha(1) p
        return got.base.family in (want.base.family, "nll", "p")
    return got.base == want.base               # only the Q<pct> bounds were resolved


def _describe(diffs, saved, current) -> str:
    def short(v):
        text = repr(v)
        return text if len(text) <= 40 else text[:37] + "..."

    return ", ".join("the data file's content (sha256 changed)" if k == "data_sha256" else
                     f"{k} ({short(saved.get(k))} then, {short(current.get(k))} now)" for k in diffs)


def _with_data_hash(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with the data file's content hash; ConfigError if it differs from a hash set in it."""
    if not Path(cfg.data).is_file():
        raise UserError(f"data file {cfg.data} does not exist")
    digest = sha256_file(cfg.data)
    if cfg.data_sha256 is not None and cfg.data_sha256 != digest:
        raise ConfigError(f"data file {cfg.data} has changed: its sha256 is {digest[:12]}..., the "
                          f"config expects {cfg.data_sha256[:12]}...")
    return dataclasses.replace(cfg, data_sha256=digest)


def _refuse_input_model_folder(cfg: FinetuneConfig) -> None:
    """A run writes config.json and model/ into its output: never into (or around) its input model."""
    model = Path(cfg.model).expanduser()
    if not model.exists():
        return
    out, model = Path(cfg.output).expanduser().resolve(), model.resolve()
    if out == model or model in out.parents or out in model.parents:
        raise ConfigError(f"--output {cfg.output} overlaps the input model folder {cfg.model}: the "
                          "run would overwrite the model it reads; choose another --output")


def _check_saved_run(cfg: FinetuneConfig, out: Path) -> None:
    """Refuse to resume or retrain over a run of another config in ``out`` unless cfg.overwrite;
    with cfg.overwrite, remove that run's files first."""
    import shutil

    saved_path = out / "config.json"
    if saved_path.exists() and not cfg.overwrite:
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{saved_path} is unreadable; pass --overwrite to start the run "
                              "over, or choose another --output") from None
        current = store.config_to_dict(cfg)
        diffs = config_differences(saved, current)
        if diffs:
            raise ConfigError(f"{out} holds a run with another config: {_describe(diffs, saved, current)}"
                              "; pass --overwrite to replace it, or choose another --output")
    if cfg.overwrite:
        for name in RUN_FILES:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _load_checkpoint(ckpt: Path, device, cfg: FinetuneConfig) -> dict:
    """The saved state of an interrupted run; UserError when the file is damaged or of another run."""
    import pickle

    try:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        keys = ("model", "optimizer", "scheduler", "step", "skipped", "tokens_seen", "rng",
                "objective", "config")
        missing = [k for k in keys if k not in state]
    except (RuntimeError, EOFError, ValueError, TypeError, OSError, pickle.UnpicklingError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"checkpoint {ckpt} is damaged ({first}); delete it or pass --no-resume "
                        "to start the run over") from None
    if missing:
        raise UserError(f"checkpoint {ckpt} is damaged (no {', '.join(missing)}); delete it or pass "
                        "--no-resume to start the run over")
    diffs = config_differences(state["config"], store.config_to_dict(cfg))
    if diffs:
        raise ConfigError(f"{ckpt} belongs to a run with another config: "
                          f"{_describe(diffs, state['config'], store.config_to_dict(cfg))}; pass "
                          "--no-resume or --overwrite, or choose another --output")
    return state


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
        cfg = _with_data_hash(cfg)
    if cfg.output is None or int(os.environ.get("RANK", "0")) != 0:
        return _finetune(cfg, model, tokenizer, progress, examples, callback)
    _refuse_input_model_folder(cfg)
    with locked_output(cfg.output, "--output") as out:
        _check_saved_run(cfg, out)
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
        state = _load_checkpoint(ckpt, device, cfg)
    if main:
        store.atomic_write_json(out / "config.json", store.config_to_dict(cfg), digits=None)
    obj = probsft.objective(state["objective"] if state else cfg.objective)
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
    if world > 1 and cfg.fsdp:
        model = shard_model(model)                 # parameters become sharded DTensors
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg, device)
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
                                              autocast=autocast, log=log_now)
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


