"""`probsft finetune`: fine-tune a causal LM with any objective (validate/train.py).

    probsft finetune --model Qwen/Qwen2.5-Math-1.5B --data math.jsonl --objective=-p --output runs/p
    torchrun --nproc-per-node 2 -m probsft.cli finetune ...      # DDP, same global batch semantics
"""

from __future__ import annotations


def add_parser(sub):
    from probsft.config import add_config_flags
    from probsft.validate.train import FinetuneConfig

    p = sub.add_parser("finetune", help="fine-tune a causal LM with an objective f(p)")
    p.add_argument("--config", help="FinetuneConfig JSON; the flags below override its values")
    add_config_flags(p, FinetuneConfig, exclude=("data_sha256",))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def config_of(args):
    """The FinetuneConfig of parsed CLI args: ``--config`` first, explicit flags override it; a
    ``--data`` flag drops the hash a config file recorded for another data file."""
    from probsft.config import config_from_flags
    from probsft.validate.train import FinetuneConfig

    return config_from_flags(FinetuneConfig, args, args.config, required=("model", "data"),
                             drop_when_given={"data": ("data_sha256",)})


def run(args) -> int:
    from probsft.validate.train import finetune

    cfg = config_of(args)
    if cfg.output is None:
        from probsft.errors import ConfigError

        raise ConfigError("finetune needs --output DIR")
    import torch.distributed as dist

    metrics = finetune(cfg, progress=args.progress)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank == 0:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in metrics.items()))
        print(f"wrote {cfg.output}")
    return 0
