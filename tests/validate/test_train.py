"""The fine-tune runner: resume is bitwise, accumulation matches a big batch, non-finite steps are
skipped, configs are strict, and the CLI commands run end to end on a tiny local model."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import probsft
from probsft.cli import main
from probsft.errors import ConfigError, UserError
from probsft.files import locked_output, sha256_file
from probsft.validate.store import load_config
from probsft.validate.data import read_jsonl, tokenize_sft
from probsft.validate.train import FinetuneConfig, finetune, micro_batches_for_step
from tests.validate.conftest import assert_grads_close, make_model, optimizer_step_gradients

VOLATILE = ("wall_s", "train/tokens_per_s")
DROPOUT = 0.3      # attention dropout: a resumed run must also restore the RNG to be bitwise equal


def _cfg(jsonl, out=None, **kw):
    base = dict(model="tiny", data=str(jsonl), objective="p", output=out and str(out), max_steps=6,
                batch_size=2, grad_accum=2, lr=3e-3, max_length=64, log_every=1, save_model=False)
    return FinetuneConfig(**{**base, **kw})


def _stable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


@pytest.mark.parametrize("spec", ["p", "nll@p>=0.05", "p@p>=Q30", "alpha(auto)", "asft(0.5)"])
def test_resume_is_bitwise_equal(tmp_path, tok, jsonl, spec):
    ref_model = make_model(tok, dropout=DROPOUT)
    ref = finetune(_cfg(jsonl, tmp_path / "a", objective=spec, checkpoint_every=2), ref_model, tok,
                   progress=False)

    def crash(step, record):
        if step == 5:
            raise KeyboardInterrupt

    cfg = _cfg(jsonl, tmp_path / "b", objective=spec, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, make_model(tok, dropout=DROPOUT), tok, progress=False, callback=crash)
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="another config"):
        finetune(dataclasses.replace(cfg, lr=1e-3), make_model(tok, dropout=DROPOUT), tok,
                 progress=False)
    resumed_model = make_model(tok, seed=123, dropout=DROPOUT)   # all state must come back
    resumed = finetune(cfg, resumed_model, tok, progress=False)
    assert _stable(resumed) == _stable(ref)
    for a, b in zip(ref_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    lines = [(tmp_path / d / "metrics.jsonl").read_text() for d in "ab"]
    assert lines[0] == lines[1] and len(lines[0].splitlines()) == 6
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    csv_rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 7 and csv_rows[0].startswith("step,train/loss")
    assert "train/nll" in csv_rows[0] and "train/wshare_p<0.1" in csv_rows[0]


def _float64_first_step(tok, cfg):
    """dL/dtheta of the runner's first global batch, in float64, as one plain mean-loss backward
    (no accumulation code involved): the reference the float32 runs are held to."""
    model = make_model(tok).double()
    examples = tokenize_sft(read_jsonl(cfg.data), tok, cfg.max_length)
    G = cfg.batch_size * cfg.grad_accum
    (batch,) = micro_batches_for_step(examples, 0, dataclasses.replace(cfg, batch_size=G, grad_accum=1),
                                      0, 1, tok.pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = probsft.objective(cfg.objective).loss(logits[:, :-1], batch["labels"][:, 1:])
    loss.backward()
    return float(loss.detach()), [p.grad for p in model.parameters()]


# float32 against float64 on a 2-layer Llama: the gradients agree to ~1e-6 of the largest entry on
# any CPU; a wrong accumulation (one micro-batch's count, a per-micro-batch mean, a lost
# micro-batch) is off by 1e-1 or more. Clipping is off so the step's gradient is dL/dtheta itself.
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5


def test_accumulation_in_runner_matches_one_big_micro_batch(tok, jsonl):
    ref_loss, ref = _float64_first_step(tok, _cfg(jsonl, batch_size=4, grad_accum=1))
    runs = []
    for batch_size, grad_accum in ((4, 1), (1, 4), (2, 2)):
        records = []
        with optimizer_step_gradients() as steps:
            out = finetune(_cfg(jsonl, batch_size=batch_size, grad_accum=grad_accum, max_steps=2,
                                max_grad_norm=0.0), make_model(tok), tok, progress=False,
                           callback=lambda step, record: records.append(record))
        assert len(steps) == 2 and out["train/steps"] == 2
        assert records[0]["train/loss"] == pytest.approx(ref_loss, rel=1e-5)
        runs.append((steps[0], out))
    for grads, _ in runs:
        assert_grads_close(grads, ref, GRAD_RTOL, GRAD_ATOL)
    # the second step's batch is the same for every split too (its token count is pure data)
    assert len({out["train/valid_tokens"] for _, out in runs}) == 1


def test_nonfinite_gradient_steps_are_skipped_and_counted(tok, jsonl):
    model = make_model(tok)
    before = [p.detach().clone() for p in model.parameters()]
    model.lm_head.weight.register_hook(lambda g: g * float("inf"))
    out = finetune(_cfg(jsonl, max_steps=3), model, tok, progress=False)
    assert out["train/skipped_nonfinite"] == 3
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_config_is_strict_and_round_trips(tmp_path, tok, jsonl):
    cfg = _cfg(jsonl, tmp_path / "o")
    for bad in (dict(lr=-1.0), dict(batch_size=0), dict(objective="p@p>=2"), dict(warmup_ratio=1.0),
                dict(betas=(0.9, 1.5)), dict(max_steps=0)):
        with pytest.raises(UserError):
            dataclasses.replace(cfg, **bad)
    finetune(cfg, make_model(tok), tok, progress=False)
    saved = load_config(FinetuneConfig, tmp_path / "o" / "config.json")
    assert saved == dataclasses.replace(cfg, data_sha256=sha256_file(jsonl))
    (tmp_path / "x.json").write_text(json.dumps({"model": "m", "data": "d", "learning_rate": 1}))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(FinetuneConfig, tmp_path / "x.json")


def test_cli_finetune_probe_evaluate(tmp_path, saved_model, jsonl, capsys):
    out = tmp_path / "run"
    rc = main(["finetune", "--model", str(saved_model), "--data", str(jsonl), "--objective=-p",
               "--output", str(out), "--max-steps", "2", "--batch-size", "4", "--no-progress"])
    assert rc == 0
    assert (out / "model" / "config.json").exists() and (out / "metrics.json").exists()
    assert json.loads((out / "config.json").read_text())["objective"] == "-p"
    assert main(["probe", "--model", str(out / "model"), "--data", str(jsonl),
                 "--json", str(tmp_path / "probe.json")]) == 0
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert 0 < probe["mean_p"] < 1 and probe["region"] == "model-weak"
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(jsonl), "--train-data",
                 str(jsonl), "--out", str(tmp_path / "eval"), "--max-new-tokens", "4"]) == 0
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert res["eval/train_mean_p"] == pytest.approx(probe["mean_p"], rel=1e-6)
    # user mistakes: one line, exit 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\nnot json\n')
    capsys.readouterr()
    assert main(["probe", "--model", str(saved_model), "--data", str(bad)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    assert main(["finetune", "--model", str(saved_model), "--data", str(jsonl),
                 "--objective", "nope(", "--output", str(out)]) == 2


def test_gradient_checkpointing_gives_the_same_step(tok, jsonl):
    """Checkpointing really recomputes (the MLP of a decoder layer runs twice per micro-batch) and the step's
    gradient is the float64 one, as without checkpointing."""
    cfg = _cfg(jsonl, max_steps=1, max_grad_norm=0.0)
    ref_loss, ref = _float64_first_step(tok, cfg)
    for checkpointing, calls_per_micro_batch in ((False, 1), (True, 2)):
        model, calls = make_model(tok), []
        mlp = model.model.layers[0].mlp                   # the recompute skips module hooks
        mlp.forward = lambda *a, _forward=mlp.forward, **k: calls.append(1) or _forward(*a, **k)
        losses = []
        with optimizer_step_gradients() as steps:
            finetune(dataclasses.replace(cfg, gradient_checkpointing=checkpointing), model, tok,
                     progress=False, callback=lambda step, record: losses.append(record["train/loss"]))
        assert len(calls) == calls_per_micro_batch * cfg.grad_accum
        assert losses[0] == pytest.approx(ref_loss, rel=1e-5)
        assert_grads_close(steps[0], ref, GRAD_RTOL, GRAD_ATOL)


def _crash_at(n):
    def crash(step, record):
        if step == n:
            raise KeyboardInterrupt
    return crash


def test_a_run_of_another_objective_is_refused_unless_overwrite(tmp_path, tok, jsonl):
    out = tmp_path / "o"
    finetune(_cfg(jsonl, out, max_steps=2), make_model(tok), tok, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match=r"another config: objective \('p' then, 'nll' now\).*--overwrite"):
        finetune(_cfg(jsonl, out, max_steps=2, objective="nll"), make_model(tok), tok, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before      # nothing lost
    finetune(_cfg(jsonl, out, max_steps=2, objective="nll", overwrite=True), make_model(tok), tok,
             progress=False)
    assert json.loads((out / "config.json").read_text())["objective"] == "nll"
    assert json.loads((out / "metrics.json").read_text())["objective"] == "nll"


def test_resuming_after_the_data_file_changed_is_refused(tmp_path, tok, jsonl):
    cfg = _cfg(jsonl, tmp_path / "o", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, make_model(tok), tok, progress=False, callback=_crash_at(3))
    saved = json.loads((tmp_path / "o" / "config.json").read_text())
    assert saved["data_sha256"] == sha256_file(jsonl)
    with open(jsonl, "a") as fh:
        fh.write(json.dumps({"prompt": "ab>", "response": "ba"}) + "\n")
    with pytest.raises(ConfigError, match="data file's content"):
        finetune(cfg, make_model(tok), tok, progress=False)
    assert (tmp_path / "o" / "checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="has changed"):   # a config that pins the hash
        finetune(dataclasses.replace(cfg, data_sha256=saved["data_sha256"]), make_model(tok), tok,
                 progress=False)


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, tok, jsonl):
    cfg = _cfg(jsonl, tmp_path / "o", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, make_model(tok), tok, progress=False, callback=_crash_at(3))
    ckpt = tmp_path / "o" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(UserError, match=r"checkpoint .* is damaged .*--no-resume"):
        finetune(cfg, make_model(tok), tok, progress=False)


def test_a_second_run_into_a_busy_output_fails_at_once(tmp_path, tok, jsonl):
    with locked_output(tmp_path / "o", "--output"):
        with pytest.raises(UserError, match="in use by another probsft run"):
            finetune(_cfg(jsonl, tmp_path / "o"), make_model(tok), tok, progress=False)
    assert not (tmp_path / "o" / "config.json").exists()


def test_a_data_flag_drops_the_hash_a_config_recorded_for_another_file(tmp_path, jsonl):
    from probsft.cli import build_parser
    from probsft.commands.finetune import config_of as config_from_args

    (tmp_path / "c.json").write_text(json.dumps({"model": "m", "data": "old.jsonl",
                                                 "data_sha256": "0" * 64}))
    args = build_parser().parse_args(["finetune", "--config", str(tmp_path / "c.json"), "--data",
                                      str(jsonl)])
    assert config_from_args(args).data_sha256 is None
    args = build_parser().parse_args(["finetune", "--config", str(tmp_path / "c.json")])
    assert config_from_args(args).data_sha256 == "0" * 64


def test_adaptive_objectives_in_the_runner(tmp_path, tok, jsonl):
    """alpha(auto) is resolved once on the base model's p and config.json saves the resolved
    objective (a replayable fixed-alpha run); deft trains with and without the fused loss."""
    from probsft.theory.statistics import alpha_from_probe
    from probsft.validate.data import read_jsonl, tokenize_sft
    from probsft.validate.probe import token_probs

    model = make_model(tok)
    probs = token_probs(model, tokenize_sft(read_jsonl(jsonl), tok, 64), tok.pad_token_id)
    want = probsft.objective(f"alpha({alpha_from_probe(probs.numpy())})").spec
    out = finetune(_cfg(jsonl, tmp_path / "auto", objective="alpha(auto)", max_steps=1), model, tok,
                   progress=False)
    assert out["objective"] == want and out["objective_requested"] == "alpha(auto)"
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert saved["objective"] == want
    for fused in (False, True):
        m = finetune(_cfg(jsonl, objective="deft", max_steps=2, fused=fused), make_model(tok), tok,
                     progress=False)
        assert m["objective"] == "deft" and np.isfinite(m["train/loss"]) and "train/nll" in m


def test_an_anchored_objective_reads_a_frozen_base_model(tok, jsonl):
    """ASFT in the runner: each micro-batch's loss is obj.loss with the frozen base model's logits
    as ref_logits (float64 reference), and the model moves away from the base while the anchor stays
    (a resumed run is bitwise equal to an uninterrupted one: test_resume_is_bitwise_equal)."""
    import copy

    from probsft.theory.losses import shift_for_causal_lm
    from probsft.validate.accumulate import micro_batch_sum
    from probsft.validate.data import collate, read_jsonl, tokenize_sft

    obj = probsft.objective("asft(1.0)")
    base = make_model(tok, seed=0).double()
    model = copy.deepcopy(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = collate(tokenize_sft(read_jsonl(jsonl)[:4], tok, 64), tok.pad_token_id)
    s, _, _, _ = micro_batch_sum(model, batch, obj, reference=base)
    lg, y = shift_for_causal_lm(model(input_ids=batch["input_ids"],
                                      attention_mask=batch["attention_mask"]).logits, batch["labels"])
    with torch.no_grad():
        ref = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    want = obj.loss(lg, y, reduction="sum", ref_logits=ref)
    assert float(s) == pytest.approx(float(want), rel=1e-12)
    assert float(s) > float(probsft.objective("dft").loss(lg, y, reduction="sum"))  # KL > 0 adds
    trained = make_model(tok)
    before = [p.detach().clone() for p in trained.parameters()]
    finetune(_cfg(jsonl, objective="asft(0.5)", max_steps=3), trained, tok, progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(before, trained.parameters()))
    with pytest.raises(ConfigError, match="KL anchor"):
        _cfg(jsonl, objective="asft", fused=True)
