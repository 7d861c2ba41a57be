"""``check-setup --framework verl``: verl's SFT data path and loss contract on the tiny model.

verl's FSDP engine (``FSDPEngineWithLMHead``) is registered for the devices ``cuda`` and ``npu``
only, so its trainer cannot start on a CPU. This check runs everything around it that is verl's own:
``MultiTurnSFTDataset`` (no-padding mode) over a local parquet file, ``SFTTensorCollator`` (nested
jagged tensors), the trainer's meta-info, ``prepare_micro_batches``, ``logprobs_from_logits`` on the
rolled input ids, and verl's ``sft_loss``; the engine's ``forward_backward_batch`` loop (global
``batch_num_tokens`` and ``dp_size`` in the data, one backward per micro-batch, no division by the
number of micro-batches) is replayed with a plain forward per sequence. On a GPU machine use the
real trainer (``python -m probsft.integrations.verl_loss``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from probsft.integrations import setup_check as sc
from probsft.theory.losses import IGNORE_INDEX

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }}"
                 "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}")


def _dataset(model_dir: Path, workdir: Path):
    import pandas as pd
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = CHAT_TEMPLATE
    path = workdir / "train.parquet"
    pd.DataFrame({"messages": [[{"role": "user", "content": r["prompt"]},
                                {"role": "assistant", "content": r["response"]}]
                               for r in sc.records()]}).to_parquet(path)
    config = {"pad_mode": "no_padding", "max_length": 64, "truncation": "error"}
    return MultiTurnSFTDataset(parquet_files=[str(path)], tokenizer=tok, config=config)


def _global_batches(dataset):
    """verl's collated global batches (BATCH·GA sequences each, in order) as TensorDicts with the
    trainer's meta-info."""
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode, SFTTensorCollator

    collate = SFTTensorCollator(DatasetPadMode.NO_PADDING)
    size = sc.BATCH * sc.GA
    meta = {"use_remove_padding": True, "use_dynamic_bsz": False, "micro_batch_size_per_gpu": sc.BATCH,
            "temperature": 1.0, "global_batch_size": size, "pad_mode": DatasetPadMode.NO_PADDING}
    for start in range(0, sc.STEPS * size, size):
        batch = collate([dataset[i] for i in range(start, start + size)])
        yield tu.get_tensordict(tensor_dict=batch, non_tensor_dict=meta)


def _micro_step(model, micro_batch, loss_fn, seen):
    """One micro-batch of FSDPEngine.forward_backward_batch: log p of the rolled ids, loss, backward."""
    from verl.utils.torch_functional import logprobs_from_logits

    ids = micro_batch["input_ids"]
    logps, logits = [], []
    for seq in ids.unbind():
        lg = model(input_ids=seq[None]).logits[0]                          # [T, V]
        logps.append(logprobs_from_logits(lg, torch.roll(seq, -1, 0), inplace_backward=False))
        logits.append(lg.detach())
    log_probs = torch.nested.nested_tensor_from_jagged(torch.cat(logps), ids.offsets())
    loss, _ = loss_fn(model_output={"log_probs": log_probs}, data=micro_batch, dp_group=None)
    loss.backward()
    seen.append((logits, ids, micro_batch, loss.detach()))


def _train(model_dir: Path, batches, loss_fn, seen) -> dict:
    from transformers import AutoModelForCausalLM
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.utils import prepare_micro_batches

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=sc.LEARNING_RATE)
    for data in batches:
        tu.assign_non_tensor(data, batch_num_tokens=int(data["loss_mask"].sum()), dp_size=1)
        micro_batches, _ = prepare_micro_batches(data=data, dp_group=None, same_micro_num_in_dp=True)
        for micro_batch in micro_batches:
            _micro_step(model, micro_batch, loss_fn, seen)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return sc.weights_of(model)


def _reference(spec, logits, ids, micro_batch) -> float:
    """float64 sum f(p) over the loss-masked next tokens / batch_num_tokens."""
    total = 0.0
    for lg, seq, mask in zip(logits, ids.unbind(), micro_batch["loss_mask"].unbind()):
        labels = torch.where(mask.bool(), seq, torch.full_like(seq, IGNORE_INDEX))
        total += sc.reference_loss(spec, lg[None], labels[None], micro_batch["batch_num_tokens"])
    return total


def check(spec: str, workdir: Path) -> sc.Measured:
    from functools import partial

    from verl.workers.utils.losses import sft_loss

    from probsft.integrations.verl_loss import sft_loss_fn

    model_dir = sc.tiny_model_dir(workdir)
    dataset = _dataset(model_dir, workdir)
    verl_ce = partial(sft_loss, config=None)
    seen = {"ce": [], "nll": [], "spec": []}
    w0 = sc.load_weights(model_dir)
    w_ce = _train(model_dir, _global_batches(dataset), verl_ce, seen["ce"])
    w_nll = _train(model_dir, _global_batches(dataset), sft_loss_fn("nll"), seen["nll"])
    w_spec = _train(model_dir, _global_batches(dataset), sft_loss_fn(spec), seen["spec"])
    return sc.Measured(
        loss_err=max(sc.rel_err(loss, _reference(spec, lg, ids, mb)) for lg, ids, mb, loss in seen["spec"]),
        scaling_err=max(sc.rel_err(a[3], b[3]) for a, b in zip(seen["nll"], seen["ce"])),
        param_err=sc.max_abs_diff(w_nll, w_ce) / max(sc.max_abs_diff(w_ce, w0), 1e-30),
        moved=sc.max_abs_diff(w_spec, w0),
        fused_err=sc.fused_err(spec, model_dir), fused_tol=sc.TOL,
        fused_what="probsft.fused_linear_loss vs the logits loss (verl hands the loss log p only)",
        micro_batches=len(seen["spec"]),
        notes=["verl's FSDP engine is registered for cuda/npu only: its forward_backward_batch loop "
               "is replayed on CPU around verl's own dataset, collator, micro-batching and sft_loss"])
