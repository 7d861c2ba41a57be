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
from probsft.validate.store import load_config
from probsft.validate.train import FinetuneConfig, finetune
from tests.validate.conftest import make_model

VOLATILE = ("wall_s", "train/tokens_per_s")


def _cfg(jsonl, out=None, **kw):
    base = dict(model="tiny", data=str(jsonl), objective="p", output=out and str(out), max_steps=6,
                batch_size=2, grad_accum=2, lr=3e-3, max_length=64, log_every=1, save_model=False)
    return FinetuneConfig(**{**base, **kw})


def _stable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


@pytest.mark.parametrize("spec", ["p", "nll@p>=0.05", "p@p>=Q30"])
def test_resume_is_bitwise_equal(tmp_path, tok, jsonl, spec):
    ref_model = make_model(tok)
    ref = finetune(_cfg(jsonl, tmp_path / "a", objective=spec, checkpoint_every=2), ref_model, tok,
                   progress=False)

    def crash(step, record):
        if step == 5:
            raise KeyboardInterrupt

    cfg = _cfg(jsonl, tmp_path / "b", objective=spec, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, make_model(tok), tok, progress=False, callback=crash)
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="another config"):
        finetune(dataclasses.replace(cfg, lr=1e-3), make_model(tok), tok, progress=False)
    resumed_model = make_model(tok, seed=123)          # different weights: all state must come back
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


def test_accumulation_in_runner_matches_one_big_micro_batch(tok, jsonl):
    m1, m2 = make_model(tok), make_model(tok)
    a = finetune(_cfg(jsonl, batch_size=4, grad_accum=1, max_steps=3), m1, tok, progress=False)
    b = finetune(_cfg(jsonl, batch_size=1, grad_accum=4, max_steps=3), m2, tok, progress=False)
    assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)
    for x, y in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(x, y) for x, y in zip(m1.parameters(), make_model(tok).parameters()))


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
    assert load_config(FinetuneConfig, tmp_path / "o" / "config.json") == cfg
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
    m1, m2 = make_model(tok), make_model(tok)
    a = finetune(_cfg(jsonl, max_steps=2), m1, tok, progress=False)
    b = finetune(_cfg(jsonl, max_steps=2, gradient_checkpointing=True), m2, tok, progress=False)
    assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-6)
    for x, y in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)


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
