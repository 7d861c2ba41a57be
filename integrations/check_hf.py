"""``check-setup`` runners for the frameworks built on transformers' ``Trainer``: ``hf`` (``Trainer``
with ``compute_loss_func``), ``trl`` (probsft.validate.hf's ``SFTTrainer`` subclass, fused LM head
too), ``llamafactory`` (its own ``run_exp`` pipeline, probsft.integrations.hf_path) and ``axolotl``
(its plugin, probsft.integrations.axolotl_plugin).

Each trains the tiny model three times with the framework's own pipeline: its default cross-entropy,
the adapter with ``nll``, and the adapter with the spec. A recording subclass of the trainer keeps,
per micro-batch, the logits (a forward hook), the labels, ``num_items_in_batch`` and the loss
``compute_loss`` returned; the framework's CE on the same micro-batch is transformers'
``ForCausalLMLoss`` (what these trainers use by default). Verdicts: probsft.integrations.setup_check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from probsft.integrations import setup_check as sc


def _recording(trainer_cls, seen: list):
    """``trainer_cls`` whose ``compute_loss`` records (logits, labels, num_items, loss) per training
    micro-batch (logits None when the model returns none, e.g. TRL's fused LM head)."""

    class Recording(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"].clone()            # Trainer pops them from inputs
            logits = []
            handle = model.register_forward_hook(
                lambda mod, args, out: logits.append(getattr(out, "logits", None)))
            try:
                out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                           num_items_in_batch=num_items_in_batch)
            finally:
                handle.remove()
            if model.training:
                lg = logits[-1].detach().clone() if logits and logits[-1] is not None else None
                loss = out[0] if return_outputs else out
                seen.append((lg, labels, *_default_scaling(self, num_items_in_batch),
                             float(loss.detach())))
            return out

    Recording.__name__ = f"Recording{trainer_cls.__name__}"
    return Recording


def _default_scaling(trainer, num_items_in_batch):
    """(num_items, divisor) of the loss ``Trainer`` back-propagates by default: the model gets
    ``num_items_in_batch`` only when ``model_accepts_loss_kwargs`` (then sum / num_items); otherwise
    its loss is the micro-batch mean and ``Trainer`` divides it by the accumulation steps."""
    if trainer.model_accepts_loss_kwargs and num_items_in_batch is not None:
        return num_items_in_batch, 1
    return None, trainer.args.gradient_accumulation_steps


def _training_args(cls, out: Path, **kw):
    return cls(output_dir=str(out), per_device_train_batch_size=sc.BATCH,
               gradient_accumulation_steps=sc.GA, max_steps=sc.STEPS, optim="sgd",
               learning_rate=sc.LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0,
               max_grad_norm=0.0, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
               seed=0, data_seed=0, dataloader_num_workers=0, **kw)


def _measure(spec, model_dir, w_ce, w_nll, w_spec, seen, fused_err, fused_what,
             fused_tol=sc.TOL):
    from transformers.loss.loss_utils import ForCausalLMLoss

    def ce(lg, y, n, divisor):
        return ForCausalLMLoss(lg, y, lg.shape[-1], num_items_in_batch=n) / divisor

    w0 = sc.load_weights(model_dir)
    with torch.no_grad():
        return sc.Measured(
            loss_err=max(sc.rel_err(loss, sc.reference_loss(spec, lg, y, n) / d)
                         for lg, y, n, d, loss in seen["spec"]),
            scaling_err=max(sc.rel_err(loss, ce(lg, y, n, d)) for lg, y, n, d, loss in seen["nll"]),
            param_err=sc.max_abs_diff(w_nll, w_ce) / max(sc.max_abs_diff(w_ce, w0), 1e-30),
            moved=sc.max_abs_diff(w_spec, w0),
            fused_err=fused_err, fused_what=fused_what, fused_tol=fused_tol,
            micro_batches=len(seen["spec"]),
            notes=[f"loss normalised by {sorted({int(n) for _, _, n, _, _ in seen['spec'] if n})}"
                   " tokens (num_items_in_batch)" if seen["spec"][0][2] is not None else
                   f"loss: micro-batch mean / {seen['spec'][0][3]} accumulation steps (the "
                   "framework's model does not take num_items_in_batch)"])


def _examples(model_dir: Path):
    from transformers import AutoTokenizer

    from probsft.validate.data import collate, tokenize_sft

    tok = AutoTokenizer.from_pretrained(model_dir)
    examples = list(tokenize_sft(sc.records(), tok, 64))
    return examples, (lambda feats: collate(feats, tok.pad_token_id))


def check_hf(spec: str, workdir: Path) -> sc.Measured:
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from probsft.validate.hf import trainer_loss

    model_dir = sc.tiny_model_dir(workdir)
    examples, collator = _examples(model_dir)
    seen = {"ce": [], "nll": [], "spec": []}

    def train(tag, loss_func):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        trainer = _recording(Trainer, seen[tag])(
            model=model, args=_training_args(TrainingArguments, workdir / tag,
                                             remove_unused_columns=False),
            train_dataset=examples, data_collator=collator, compute_loss_func=loss_func)
        trainer.train()
        return sc.weights_of(model)

    w_ce = train("ce", None)
    w_nll, w_spec = train("nll", trainer_loss("nll")), train("spec", trainer_loss(spec))
    return _measure(spec, model_dir, w_ce, w_nll, w_spec, seen, sc.fused_err(spec, model_dir),
                    "probsft.fused_linear_loss vs the logits loss (Trainer hands the loss logits)")


def check_trl(spec: str, workdir: Path) -> sc.Measured:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from probsft.validate.hf import objective_sft_trainer

    model_dir = sc.tiny_model_dir(workdir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in sc.records()])
    seen = {"ce": [], "nll": [], "spec": [], "fused": []}

    def train(tag, trainer_cls):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        trainer = _recording(trainer_cls, seen[tag])(
            model=model, args=_training_args(SFTConfig, workdir / tag, max_length=64, bf16=False),
            train_dataset=ds, processing_class=tok)
        trainer.train()
        return sc.weights_of(model)

    w_ce = train("ce", SFTTrainer)
    w_nll = train("nll", objective_sft_trainer("nll"))
    w_spec = train("spec", objective_sft_trainer(spec))
    w0 = sc.load_weights(model_dir)
    fused = (sc.max_abs_diff(train("fused", objective_sft_trainer(spec, fused_lm_head=True)), w_spec)
             / max(sc.max_abs_diff(w_spec, w0), 1e-30))
    return _measure(spec, model_dir, w_ce, w_nll, w_spec, seen, fused,
                    "TRL fused LM head vs logits path, weights after the steps (rel. to movement)",
                    sc.FUSED_WEIGHTS_TOL)


def _llamafactory_dataset(workdir: Path) -> Path:
    data_dir = workdir / "lf_data"
    data_dir.mkdir(exist_ok=True)
    with open(data_dir / "train.json", "w") as fh:
        json.dump([{"instruction": r["prompt"], "input": "", "output": r["response"]}
                   for r in sc.records()], fh)
    with open(data_dir / "dataset_info.json", "w") as fh:
        json.dump({"tiny": {"file_name": "train.json"}}, fh)
    return data_dir


def check_llamafactory(spec: str, workdir: Path) -> sc.Measured:
    from llamafactory.train import tuner
    from llamafactory.train.sft import workflow
    from transformers import TrainerCallback

    from probsft.integrations.hf_path import llamafactory_trainer_class

    model_dir = sc.tiny_model_dir(workdir)
    data_dir = _llamafactory_dataset(workdir)
    original = workflow.CustomSeq2SeqTrainer
    seen = {"ce": [], "nll": [], "spec": []}

    class Weights(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.weights = sc.weights_of(model)

    def train(tag, trainer_cls):
        workflow.CustomSeq2SeqTrainer = _recording(trainer_cls, seen[tag])
        weights = Weights()
        try:
            tuner.run_exp({
                "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True,
                "finetuning_type": "full", "template": "empty", "dataset": "tiny",
                "dataset_dir": str(data_dir), "cutoff_len": 64, "preprocessing_num_workers": None,
                "overwrite_cache": True, "output_dir": str(workdir / tag),
                "per_device_train_batch_size": sc.BATCH, "gradient_accumulation_steps": sc.GA,
                "max_steps": sc.STEPS, "optim": "sgd", "learning_rate": sc.LEARNING_RATE,
                "lr_scheduler_type": "constant", "warmup_steps": 0, "max_grad_norm": 0.0,
                "report_to": "none", "save_strategy": "no", "logging_steps": 1, "use_cpu": True,
                "seed": 0, "data_seed": 0, "disable_shuffling": True, "plot_loss": False,
                "dataloader_num_workers": 0}, callbacks=[weights])
        finally:
            workflow.CustomSeq2SeqTrainer = original
        return weights.weights

    w_ce = train("ce", original)
    w_nll = train("nll", llamafactory_trainer_class("nll"))
    w_spec = train("spec", llamafactory_trainer_class(spec))
    return _measure(spec, model_dir, w_ce, w_nll, w_spec, seen, sc.fused_err(spec, model_dir),
                    "probsft.fused_linear_loss vs the logits loss (LLaMA-Factory hands the loss logits)")


def _axolotl_config(model_dir: Path, workdir: Path, tag: str, spec: str | None) -> Path:
    data = workdir / "ax_data.jsonl"
    data.write_text("".join(json.dumps({"instruction": r["prompt"], "input": "", "output": r["response"]})
                            + "\n" for r in sc.records()))
    cfg = {"base_model": str(model_dir),
           "datasets": [{"path": str(data), "type": "alpaca", "ds_type": "json"}],
           "dataset_prepared_path": str(workdir / f"ax_prepared_{tag}"), "val_set_size": 0,
           "sequence_len": 384, "sample_packing": False, "micro_batch_size": sc.BATCH,
           "gradient_accumulation_steps": sc.GA, "max_steps": sc.STEPS, "num_epochs": 1,
           "optimizer": "sgd", "learning_rate": sc.LEARNING_RATE, "lr_scheduler": "constant",
           "warmup_steps": 0, "max_grad_norm": 0.0, "bf16": False, "fp16": False, "tf32": False,
           "output_dir": str(workdir / tag), "save_strategy": "no", "logging_steps": 1, "seed": 0,
           "shuffle_merged_datasets": False, "dataloader_num_workers": 0, "dataset_num_proc": 1}
    if spec is not None:
        cfg.update({"plugins": ["probsft.integrations.axolotl_plugin.ProbsftPlugin"],
                    "probsft_spec": spec})
    path = workdir / f"axolotl_{tag}.json"
    path.write_text(json.dumps(cfg))
    return path


def check_axolotl(spec: str, workdir: Path) -> sc.Measured:
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")    # no telemetry from a setup check
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets
    from axolotl.train import train as axolotl_train

    from probsft.integrations import axolotl_plugin

    model_dir = sc.tiny_model_dir(workdir)
    seen = {"ce": [], "nll": [], "spec": []}
    plugin_hook = axolotl_plugin.ProbsftPlugin.post_trainer_create
    tag_now = []

    def recording_hook(self, cfg, trainer):          # the plugin's hook, then a recording class
        plugin_hook(self, cfg, trainer)
        trainer.__class__ = _recording(type(trainer), seen[tag_now[-1]])

    def train(tag, s):
        tag_now.append(tag)
        cfg = load_cfg(str(_axolotl_config(model_dir, workdir, tag, s)))
        meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
        model, _, _ = axolotl_train(cfg=cfg, dataset_meta=meta)
        return sc.weights_of(model)

    axolotl_plugin.ProbsftPlugin.post_trainer_create = recording_hook
    try:
        w_ce, w_nll, w_spec = train("ce", None), train("nll", "nll"), train("spec", spec)
    finally:
        axolotl_plugin.ProbsftPlugin.post_trainer_create = plugin_hook
    return _measure(spec, model_dir, w_ce, w_nll, w_spec, seen, sc.fused_err(spec, model_dir),
                    "probsft.fused_linear_loss vs the logits loss (axolotl's Trainer hands the loss logits)")
