"""`probsft finetune`: fine-tune a causal LM with any objective (validate/train.py).

    probsft finetune --model Qwen/Qwen2.5-Math-1.5B --data math.jsonl --objective=-p --output runs/p
    torchrun --nproc-per-node 2 -m probsft.cli finetune ...      # DDP, same global batch semantics
"""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("finetune", help="fine-tune a causal LM with an objective f(p)")
    p.add_argument("--config", help="FinetuneConfig JSON; the flags below override its values")
    p.add_argument("--model", help="hub name or local path of an AutoModelForCausalLM")
    p.add_argument("--data", help="SFT JSONL (prompt/response or messages)")
    p.add_argument("--objective", help="objective spec, e.g. nll, -p, 'nll@p>=0.2', 'alpha(10)' "
                                       "(write --objective=-p for a spec starting with '-')")
    p.add_argument("--output", help="output folder (model, metrics, config, checkpoints)")
    p.add_argument("--max-steps", dest="max_steps", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", dest="batch_size", type=int, help="micro-batch per rank")
    p.add_argument("--grad-accum", dest="grad_accum", type=int)
    p.add_argument("--max-length", dest="max_length", type=int)
    p.add_argument("--warmup-ratio", dest="warmup_ratio", type=float)
    p.add_argument("--weight-decay", dest="weight_decay", type=float)
    p.add_argument("--max-grad-norm", dest="max_grad_norm", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--bf16", action="store_const", const=True, default=None)
    p.add_argument("--no-bf16", dest="bf16", action="store_const", const=False)
    p.add_argument("--fused", action="store_const", const=True, default=None,
                   help="chunked linear+f(p) loss: never materialise the logits")
    p.add_argument("--fsdp", action="store_const", const=True, default=None,
                   help="under torchrun: shard parameters, gradients and optimizer state (torch "
                        "fully_shard) instead of DDP")
    p.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_const",
                   const=True, help="recompute activations in the backward pass (saves memory)")
    p.add_argument("--no-save-model", dest="save_model", action="store_const", const=False)
    p.add_argument("--log-every", dest="log_every", type=int)
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    p.add_argument("--no-resume", dest="resume", action="store_const", const=False)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.validate.train import config_from_args, finetune

    cfg = config_from_args(args)
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
