"""The objective plugged into HF Trainer (compute_loss_func) and TRL SFTTrainer (compute_loss
override): with gradient accumulation their step gradient equals our runner's (same objective code)."""

import types

import pytest
import torch

import probsft
from probsft.validate.accumulate import accumulate_gradients
from probsft.validate.data import collate, tokenize_sft
from probsft.theory.losses import counted_tokens
from probsft.validate.hf import causal_lm_loss, objective_sft_trainer, trainer_loss
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


def _sft_trainer(tmp_path, tok, records, spec, fused, callbacks=()):
    from datasets import Dataset
    from trl import SFTConfig

    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in records])
    return objective_sft_trainer(spec, fused_lm_head=fused)(
        model=make_model(tok), args=_args(SFTConfig, tmp_path, max_length=64, bf16=False),
        train_dataset=ds, processing_class=tok, callbacks=list(callbacks))


@pytest.mark.parametrize("spec, fused", [("p", False), ("nll", False), ("p", True),
                                         ("dft", True)])
def test_trl_sft_trainer_subclass(tmp_path, tok, spec, fused):
    records = make_records(4, seed=3)
    capture = _Capture()
    trainer = _sft_trainer(tmp_path, tok, records, spec, fused, [capture])
    # TRL tokenises prompt + completion + eos with the prompt masked, exactly like tokenize_sft.
    trl_ids = sorted(tuple(x) for x in trainer.train_dataset["input_ids"])
    ours = tokenize_sft(records, tok, 64)
    assert trl_ids == sorted(tuple(e["input_ids"]) for e in ours)
    trainer.train()
    _assert_same(capture.grads, _ours(make_model(tok), tok, ours, spec))


def test_fused_head_values_are_the_loss_paths_token_terms():
    """TRL's fused-head path takes f, s_f and the mask from theory.losses.token_terms, so a target
    with p rounding to 1 stays finite for log(1-p) exactly as in the logits path."""
    from probsft.theory.losses import token_terms
    from probsft.validate.hf import logprob_token_values

    obj = probsft.objective("log(1-p)")
    logp = torch.tensor([0.0, -1e-12, -0.5, -3.0], requires_grad=True)    # p = 1 rounds exactly
    mask = torch.tensor([True, True, True, False])
    values, counted = logprob_token_values(obj, logp, mask)
    counted_ref, f, s = token_terms(obj, logp.detach(), mask)
    assert torch.isfinite(values).all() and torch.equal(counted, counted_ref)
    torch.testing.assert_close(values.detach(), f)
    values.sum().backward()
    torch.testing.assert_close(logp.grad, -s)


def _token_sum_and_count(model, batch, spec):
    """(sum of f(p) over the counted shifted tokens in float64, the valid-token count)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    obj = probsft.objective(spec)
    lg, y = logits[:, :-1].double(), batch["labels"][:, 1:]
    return float(obj.loss(lg, y, reduction="sum")), int((y != -100).sum())


@pytest.mark.parametrize("spec", ["p", "nll@p>=0.01"])
def test_causal_lm_loss_divides_by_counted_tokens_or_num_items(tok, spec):
    """Without num_items_in_batch (HF passes none when the model takes no loss kwargs) the loss is
    the mean over counted tokens; with it, the sum over num_items_in_batch."""
    batch = collate(tokenize_sft(make_records(4, seed=3), tok, 64), tok.pad_token_id)
    model = make_model(tok, spread=20.0)
    obj = probsft.objective(spec)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    total, valid = _token_sum_and_count(model, batch, spec)
    counted = counted_tokens(obj, logits[:, :-1], batch["labels"][:, 1:])
    assert 1 < counted and total > 0 and (counted < valid) == (obj.interval is not None)
    loss_fn = trainer_loss(spec)
    assert float(loss_fn({"logits": logits}, batch["labels"])) == pytest.approx(total / counted,
                                                                                rel=1e-6)
    assert float(causal_lm_loss(obj, logits, batch["labels"], num_items_in_batch=37)) == \
        pytest.approx(total / 37, rel=1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_trl_loss_scales_by_the_number_of_processes(tmp_path, tok, fused):
    """TRL's num_items_in_batch counts every rank's tokens and DDP averages the ranks' gradients,
    so each rank's loss is multiplied by the number of processes (faked here: the Accelerator's
    num_processes is the only thing compute_loss reads of the world)."""
    spec = "p"
    trainer = _sft_trainer(tmp_path, tok, make_records(4, seed=3), spec, fused)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model
    total, valid = _token_sum_and_count(model, batch, spec)
    assert trainer.args.average_tokens_across_devices
    losses = {}
    for world in (1, 2, 8):
        trainer.accelerator = types.SimpleNamespace(num_processes=world)
        losses[world] = float(trainer.compute_loss(model, batch, num_items_in_batch=3 * valid))
    for world, loss in losses.items():
        assert loss == pytest.approx(world * total / (3 * valid), rel=1e-5)
    # no num_items_in_batch: the micro-batch's own token mean, never scaled by the world size
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(total / valid, rel=1e-5)


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


def test_hooks_refuse_an_anchored_objective_at_start_up():
    """ASFT needs the base model's logits beside the model's: the HF hook refuses it when it is
    built, with one clear error, not at the first step; so does the runner with --fused."""
    from probsft.errors import ConfigError, SpecError
    from probsft.validate.hf import trainer_loss
    from probsft.validate.train import FinetuneConfig

    with pytest.raises(SpecError, match="base model's logits"):
        trainer_loss("asft(0.1)")
    with pytest.raises(ConfigError, match="KL anchor"):
        FinetuneConfig(model="m", objective="asft", fused=True)
