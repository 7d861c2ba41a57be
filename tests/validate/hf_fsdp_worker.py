"""Run by tests/validate/test_fsdp.py: HF Trainer with probsft's compute_loss_func for 2 steps,
asked for FSDP (``fsdp="full_shard"``) under a 2-process launcher, or in one process; writes the
loss curve and what the Trainer really wrapped the model in as JSON.

    python -m torch.distributed.run --nproc-per-node 2 tests/validate/hf_fsdp_worker.py OUT.json
    accelerate launch --multi_gpu --num_processes 2 tests/validate/hf_fsdp_worker.py OUT.json

On CPU (gloo) accelerate 1.x turns FSDP on only for accelerator device types (its
``AcceleratorState`` sets ``DistributedType.FSDP`` for MULTI_GPU/NPU/XPU/..., not MULTI_CPU), so the
Trainer silently runs DDP here whatever the arguments say: the JSON's ``wrapped`` tells.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import torch


def curve(per_device_batch: int, fsdp: bool):
    from transformers import Trainer, TrainingArguments

    from probsft.validate.data import collate, tokenize_sft
    from probsft.validate.hf import trainer_loss
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    torch.set_num_threads(1)
    tok = build_char_tokenizer("abcdefghij >")
    records = [{"prompt": "abc def" + " ghij" * (i % 3) + ">", "response": "jihg fed"[: 3 + i % 5]}
               for i in range(16)]
    examples = tokenize_sft(records, tok, 64)
    extra = dict(fsdp="full_shard", fsdp_config={"transformer_layer_cls_to_wrap":
                                                  ["LlamaDecoderLayer"]}) if fsdp else {}
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=per_device_batch,
                                 max_steps=2, learning_rate=1e-3, report_to=[], save_strategy="no",
                                 logging_steps=1, use_cpu=True, disable_tqdm=True, seed=0,
                                 remove_unused_columns=False, **extra)
        trainer = Trainer(model=tiny_llama(len(tok), hidden_size=32, layers=2, heads=4, seed=0),
                          args=args, train_dataset=list(examples),
                          data_collator=lambda f: collate(f, tok.pad_token_id),
                          compute_loss_func=trainer_loss("p@p>=0.05"))
        trainer.train()
    return ([h["loss"] for h in trainer.state.log_history if "loss" in h],
            {"wrapped": type(trainer.model_wrapped).__name__, "fsdp": trainer.is_fsdp_enabled})


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    losses, ran = curve(per_device_batch=4, fsdp=True)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(sys.argv[1]).write_text(json.dumps({"losses": losses, **ran}))
