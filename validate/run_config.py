"""The fine-tune's configuration: one frozen dataclass that rejects bad values at construction.

Each field carries its command-line help (probsft.config.add_config_flags turns the fields into
``probsft finetune`` flags); :data:`OPTIMIZERS` maps an optimizer name to its constructor. The
objective spec is parsed once, here: ``cfg.parsed_objective`` is what the runner trains with.
"""

from __future__ import annotations

import dataclasses
import math

import torch

import probsft
from probsft.errors import ConfigError

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
        # SpecError on a bad spec; the fine-tune reads the parsed objective, never parses again
        object.__setattr__(self, "parsed_objective", probsft.objective(self.objective))
        if self.parsed_objective.needs_reference and (self.fused or self.fsdp):
            raise ConfigError(f"objective {self.objective}: its KL anchor to the base model needs "
                              "the full logits of a frozen copy on every batch; --fused and --fsdp "
                              "do not support it yet")
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
