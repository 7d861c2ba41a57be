"""``check-setup --framework swift``: ms-swift's own ``SwiftSft`` pipeline (``swift sft``) on the tiny
model, three times: its default cross-entropy, ``--loss_type`` = the probsft loss for ``nll``, and for
the spec (probsft.integrations.swift_loss). See probsft.integrations.setup_check for the verdicts.

The probsft loss classes are wrapped by a recorder that keeps, per micro-batch, what ms-swift passed
(logits, labels, num_items_in_batch), what the loss returned, and ms-swift's own registered
``cross_entropy`` loss on the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from probsft.integrations import setup_check as sc


def _recording(cls, seen: list):
    class Recording(cls):
        def __call__(self, outputs, labels, *, num_items_in_batch=None, loss_scale=None, **kwargs):
            from swift.loss import loss_map

            loss = super().__call__(outputs, labels, num_items_in_batch=num_items_in_batch,
                                    loss_scale=loss_scale, **kwargs)
            if self.trainer.model.training:
                ce = loss_map["cross_entropy"](self.args, self.trainer)(
                    outputs, labels, num_items_in_batch=num_items_in_batch)
                seen.append((outputs.logits.detach().clone(), labels.clone(), num_items_in_batch,
                             float(loss), float(ce)))
            return loss
    return Recording


def _dataset(workdir: Path) -> Path:
    path = workdir / "data.jsonl"
    with open(path, "w") as fh:
        for r in sc.records():
            fh.write(json.dumps({"messages": [{"role": "user", "content": r["prompt"]},
                                              {"role": "assistant", "content": r["response"]}]}) + "\n")
    return path


def _train(model_dir: Path, data: Path, out: Path, loss_type: str | None) -> dict:
    from swift.pipelines import SwiftSft

    argv = ["--model", str(model_dir), "--model_type", "llama", "--template", "default",
            "--dataset", str(data), "--split_dataset_ratio", "0", "--dataset_num_proc", "1",
            "--tuner_type", "full", "--use_hf", "true", "--torch_dtype", "float32",
            "--max_steps", str(sc.STEPS), "--per_device_train_batch_size", str(sc.BATCH),
            "--gradient_accumulation_steps", str(sc.GA), "--optim", "sgd",
            "--learning_rate", str(sc.LEARNING_RATE), "--lr_scheduler_type", "constant",
            "--warmup_ratio", "0", "--max_grad_norm", "0", "--seed", "0", "--data_seed", "0",
            "--dataloader_num_workers", "0", "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "1", "--output_dir", str(out)]
    if loss_type:
        argv += ["--loss_type", loss_type]
    sft = SwiftSft(argv)
    sft.main()
    return sc.weights_of(sft.model)


def check(spec: str, workdir: Path) -> sc.Measured:
    from probsft.integrations.swift_loss import loss_class
    from swift.loss import loss_map

    model_dir = sc.tiny_model_dir(workdir)
    data = _dataset(workdir)
    seen = {"spec": [], "nll": []}
    for name, s in (("spec", spec), ("nll", "nll")):
        loss_map[f"probsft_check_{name}"] = _recording(loss_class(s), seen[name])
    w0 = sc.load_weights(model_dir)
    w_ce = _train(model_dir, data, workdir / "ce", None)
    w_nll = _train(model_dir, data, workdir / "nll", "probsft_check_nll")
    w_spec = _train(model_dir, data, workdir / "spec", "probsft_check_spec")
    return sc.Measured(
        loss_err=max(sc.rel_err(loss, sc.reference_loss(spec, lg, y, n))
                     for lg, y, n, loss, _ in seen["spec"]),
        scaling_err=max(sc.rel_err(loss, ce) for *_, loss, ce in seen["nll"]),
        param_err=sc.max_abs_diff(w_nll, w_ce) / max(sc.max_abs_diff(w_ce, w0), 1e-30),
        moved=sc.max_abs_diff(w_spec, w0),
        fused_err=sc.fused_err(spec, model_dir), fused_tol=sc.TOL,
        fused_what="probsft.fused_linear_loss vs the logits loss (ms-swift hands the loss logits)",
        micro_batches=len(seen["spec"]),
        notes=[f"num_items_in_batch passed: {sorted({int(n) for *_, n, _, _ in seen['spec']})}"])
