"""Backbone sizes (``probsft backbone build --size``), the build record (data hash, loss curve) and
the resume after stage 1, at a small config (few steps, tiny shape); no real backbone is built."""

import dataclasses
import json

import pytest
import torch

from probsft.errors import ConfigError
from probsft.validate import backbone as bb
from probsft.validate.backbone import SHIPPED, SIZES, BackboneConfig, build, size_config
from probsft.validate.pretrain import corpus_sha256, loss_curve, pretrain

SMALL = dict(hidden_size=16, layers=1, heads=2, intermediate_size=32, steps=6, batch_size=4,
             warmup=2, dial_steps=5, dial_batch_size=4, pool=40)


def _params_on_meta(cfg: BackboneConfig) -> int:
    """Parameter count of cfg's model, built on the meta device (no memory for the weights)."""
    from probsft.validate.tasks import ALPHABET
    from probsft.validate.tiny import tiny_llama

    with torch.device("meta"):
        model = tiny_llama(len(ALPHABET) + 4, cfg.hidden_size, cfg.layers, cfg.heads, 0,
                           cfg.max_position, cfg.intermediate_size)
    return sum(p.numel() for p in model.parameters())


def test_tiny_is_the_shipped_config():
    shipped = json.loads((SHIPPED / "backbone_config.json").read_text())
    assert size_config("tiny") == BackboneConfig() == BackboneConfig.from_dict(shipped)
    assert size_config("tiny", steps=5).steps == 5


def test_medium_is_ten_times_tiny_and_fits_40_mb_in_float32():
    tiny, medium = _params_on_meta(size_config("tiny")), _params_on_meta(size_config("medium"))
    assert tiny == 829_568                                # models/backbone/build.json "params"
    V, H, L, I = 100, 384, 5, 1024                        # char vocab; Llama: 2 embeddings + blocks
    assert medium == 2 * V * H + L * (4 * H * H + 3 * H * I + 2 * H) + H == 8_928_384
    assert medium >= 8_000_000 and medium >= 10 * tiny
    assert 4 * medium <= 40e6                             # float32 safetensors under 40 MB
    cfg = size_config("medium")                           # same data and steps as the tiny
    assert (cfg.steps, cfg.dial_steps, cfg.mix, cfg.dial_mix, cfg.pool) == (
        700, 300, BackboneConfig().mix, BackboneConfig().dial_mix, 6000)


def test_unknown_size_is_one_clear_error(tmp_path, capsys):
    from probsft.cli import main

    with pytest.raises(ConfigError, match="unknown backbone size 'huge'; sizes: tiny, medium"):
        size_config("huge")
    assert main(["backbone", "build", "--size", "huge", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sizes: " + ", ".join(SIZES) in err
    assert not (tmp_path / "o").exists()                  # refused before any work


def test_corpus_hash_and_loss_curve():
    assert corpus_sha256({"a": ["x", "y"], "b": ["z"]}) == corpus_sha256({"b": ["z"], "a": ["x", "y"]})
    assert corpus_sha256({"a": ["x", "y"]}) != corpus_sha256({"a": ["y", "x"]})
    assert loss_curve([1.0, 2.0, 3.0, 5.0, 7.0], every=2) == [1.5, 4.0, 7.0]


class Interrupt(Exception):
    pass


def _pretrain_counting(monkeypatch, interrupt_dial=False):
    """Patch the build's pretrain: count the stage-1 calls; optionally raise when the dial starts."""
    calls = {"stage1": 0}

    def wrapped(model, tok, docs, mix, *args, **kw):
        if mix == BackboneConfig(**SMALL).mix:
            calls["stage1"] += 1
        elif interrupt_dial:
            raise Interrupt
        return pretrain(model, tok, docs, mix, *args, **kw)

    monkeypatch.setattr(bb, "pretrain", wrapped)
    return calls


def test_interrupted_build_resumes_after_stage1(tmp_path, monkeypatch):
    """A build stopped in the dial leaves <out>/stage1/; run again, it skips stage 1 and ends with
    the weights and record (data hash, loss curve) of an uninterrupted build, and removes the
    folder. A stage 1 of another config is not resumed from."""
    from safetensors.torch import load_file

    from probsft.validate.backbone import corpus

    cfg = BackboneConfig(**SMALL)
    whole = build(cfg, tmp_path / "whole", progress=False, probe_n=4)
    saved = json.loads((tmp_path / "whole" / "build.json").read_text())
    docs = {**corpus(cfg), **corpus(cfg, cfg.dial_mix)}
    assert saved["data_sha256"] == whole["data_sha256"] == corpus_sha256(docs)
    assert saved["loss_curve"]["every"] == 10 and len(saved["loss_curve"]["stage1"]) == 1
    assert saved["loss_curve"]["stage1"][0] == pytest.approx(saved["stage1_final_loss"])  # 6 steps
    assert saved["loss_curve"]["dial"][0] == pytest.approx(saved["dial_final_loss"])
    assert not (tmp_path / "whole" / "stage1").exists()

    out = tmp_path / "resumed"
    _pretrain_counting(monkeypatch, interrupt_dial=True)
    with pytest.raises(Interrupt):
        build(cfg, out, progress=False, probe_n=4)
    assert (out / "stage1" / "model.safetensors").exists() and not (out / "model.safetensors").exists()
    calls = _pretrain_counting(monkeypatch)
    resumed = build(cfg, out, progress=False, probe_n=4)
    assert calls["stage1"] == 0 and "resumed" in resumed and not (out / "stage1").exists()
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "resumed")}
    assert drop(json.loads((out / "build.json").read_text())) == drop(saved)

    other = tmp_path / "other"                            # stage 1 saved by a 6-step config ...
    _pretrain_counting(monkeypatch, interrupt_dial=True)
    with pytest.raises(Interrupt):
        build(cfg, other, progress=False, probe_n=4)
    calls = _pretrain_counting(monkeypatch)               # ... is not resumed by a 5-step one
    record = build(dataclasses.replace(cfg, steps=5), other, progress=False, probe_n=4)
    assert calls["stage1"] == 1 and "resumed" not in record
