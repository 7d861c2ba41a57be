"""The objective plugged into HF Trainer (compute_loss_func) and TRL SFTTrainer (compute_loss
override): with gradient accumulation their step gradient equals our runner's (same objective code)."""

import pytest
import torch

import probsft
from probsft.validate.accumulate import accumulate_gradients
from probsft.validate.data import collate, tokenize_sft
from probsft.validate.hf import objective_sft_trainer, trainer_loss
from tests.validate.conftest import make_model, make_records


class _Capture:
    """A TrainerCallback that records the gradients just before the first optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Capture(TrainerCallback):
            grads = None

            def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
                if self.grads is None:
                    self.grads = [p.grad.detach().clone() for p in model.parameters()]
        return Capture()


def _args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=2,
               max_steps=1, learning_rate=1e-3, max_grad_norm=0.0, report_to=[], save_strategy="no",
               logging_strategy="no", use_cpu=True, dataloader_drop_last=True, seed=0,
               remove_unused_columns=False, **kw)


def _ours(model, tok, examples, spec):
    model.zero_grad(set_to_none=True)
    accumulate_gradients(model, [collate(examples, tok.pad_token_id)], probsft.objective(spec))
    return [p.grad.clone() for p in model.parameters()]


def _assert_same(got, want):
    scale = max(float(w.abs().max()) for w in want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("spec", ["p", "alpha(0.5)"])
def test_hf_trainer_compute_loss_func(tmp_path, tok, spec):
    from transformers import Trainer, TrainingArguments

    examples = tokenize_sft(make_records(4, seed=3), tok, 64)     # 4 examples: one optimizer step
    model = make_model(tok)
    capture = _Capture()
    trainer = Trainer(model=model, args=_args(TrainingArguments, tmp_path), train_dataset=list(examples),
                      data_collator=lambda feats: collate(feats, tok.pad_token_id),
                      compute_loss_func=trainer_loss(spec), callbacks=[capture])
    trainer.train()
    _assert_same(capture.grads, _ours(make_model(tok), tok, examples, spec))


@pytest.mark.parametrize("spec, fused", [("p", False), ("nll", False), ("p", True),
                                         ("dft", True)])
def test_trl_sft_trainer_subclass(tmp_path, tok, spec, fused):
    from datasets import Dataset
    from trl import SFTConfig

    records = make_records(4, seed=3)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in records])
    capture = _Capture()
    trainer = objective_sft_trainer(spec, fused_lm_head=fused)(
        model=make_model(tok), args=_args(SFTConfig, tmp_path, max_length=64, bf16=False),
        train_dataset=ds, processing_class=tok, callbacks=[capture])
    # TRL tokenises prompt + completion + eos with the prompt masked, exactly like tokenize_sft.
    trl_ids = sorted(tuple(x) for x in trainer.train_dataset["input_ids"])
    ours = tokenize_sft(records, tok, 64)
    assert trl_ids == sorted(tuple(e["input_ids"]) for e in ours)
    trainer.train()
    _assert_same(capture.grads, _ours(make_model(tok), tok, ours, spec))


def _logged(history):
    return [h for h in history if "train/nll" in h]


def test_hooks_log_nll_and_weight_shares(tmp_path, tok):
    """train/nll is the NLL of the same tokens and the W_f shares sum to 1, in both hooks' logs."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments
    from trl import SFTConfig

    from probsft.validate.logstats import KEYS

    examples = tokenize_sft(make_records(4, seed=3), tok, 64)
    loss_func = trainer_loss("dft")
    args = dict(logging_strategy="steps", logging_steps=1)
    trainer = Trainer(model=make_model(tok), train_dataset=list(examples),
                      args=TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                        max_steps=1, report_to=[], save_strategy="no",
                                        use_cpu=True, remove_unused_columns=False, **args),
                      data_collator=lambda feats: collate(feats, tok.pad_token_id),
                      compute_loss_func=loss_func, callbacks=[loss_func.log_callback])
    model0 = make_model(tok)
    trainer.train()
    logged = _logged(trainer.state.log_history)
    assert len(logged) == 1 and set(KEYS) <= set(logged[0])
    b = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        logits = model0(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    want = probsft.objective("nll").loss(logits[:, :-1], b["labels"][:, 1:])
    assert logged[0]["train/nll"] == pytest.approx(float(want), rel=1e-4)
    assert sum(logged[0][k] for k in KEYS[1:]) == pytest.approx(1.0)
    records = make_records(4, seed=3)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in records])
    trl = objective_sft_trainer("p")(
        model=make_model(tok), train_dataset=ds, processing_class=tok,
        args=SFTConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4,
                       max_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False,
                       max_length=64, **args))
    trl.train()
    logged = _logged(trl.state.log_history)
    assert len(logged) == 1 and logged[0]["train/nll"] == pytest.approx(float(want), rel=1e-4)
    with pytest.raises(probsft.SpecError, match="fused LM head"):
        objective_sft_trainer("deft", fused_lm_head=True)
    with pytest.raises(probsft.SpecError, match="resolve"):
        trainer_loss("alpha(auto)")
