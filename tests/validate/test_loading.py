"""The one model loader: each broken model path is one UserError saying what is wrong and what a
valid folder holds, never a transformers traceback; a valid folder loads."""

import json
import shutil

import pytest

from probsft.cli import main
from probsft.errors import UserError
from probsft.validate.loading import load_model_and_tokenizer, model_folder_problem


def test_a_saved_folder_loads(saved_model):
    model, tok = load_model_and_tokenizer(saved_model)
    assert model.config.model_type == "llama" and tok.pad_token_id is not None
    assert model_folder_problem(saved_model) is None


def _broken(kind, tmp_path, saved_model):
    """A model path broken in one way; returns (path, words the error must contain)."""
    if kind == "missing":
        return tmp_path / "runs" / "p" / "model", ["does not exist", "config.json"]
    if kind == "file":
        return saved_model / "config.json", ["is a file", "config.json"]
    if kind == "empty":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty", ["is empty", "tokenizer"]
    if kind == "run folder":
        run = tmp_path / "run"
        run.mkdir()
        shutil.copytree(saved_model, run / "model")
        (run / "metrics.json").write_text("{}")
        (run / "config.json").write_text(json.dumps({"model": "base", "objective": "nll"}))
        return run, ["is a run folder", str(run / "model")]
    if kind == "no config":
        (saved_model / "config.json").unlink()
        return saved_model, ["no config.json"]
    if kind == "unknown model_type":
        cfg = json.loads((saved_model / "config.json").read_text())
        (saved_model / "config.json").write_text(json.dumps({**cfg, "model_type": "llamax"}))
        return saved_model, ["model_type 'llamax'", "does not know"]
    if kind == "no tokenizer":
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (saved_model / f).unlink(missing_ok=True)
        return saved_model, ["no tokenizer", "tokenizer.save_pretrained"]
    if kind == "no weights":
        (saved_model / "model.safetensors").unlink()
        return saved_model, ["no weights", "model.safetensors"]
    if kind == "truncated safetensors":
        w = saved_model / "model.safetensors"
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
        return saved_model, ["model.safetensors is truncated", "again"]
    if kind == "cut header":
        w = saved_model / "model.safetensors"
        w.write_bytes(w.read_bytes()[:100])
        return saved_model, ["model.safetensors is truncated"]
    raise AssertionError(kind)


KINDS = ["missing", "file", "empty", "run folder", "no config", "unknown model_type",
         "no tokenizer", "no weights", "truncated safetensors", "cut header"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_model_path_is_one_clear_error(kind, tmp_path, saved_model):
    path, words = _broken(kind, tmp_path, saved_model)
    with pytest.raises(UserError) as info:
        load_model_and_tokenizer(path)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("kind", ["missing", "run folder", "truncated safetensors"])
def test_cli_reports_a_broken_model_path_in_one_line(kind, tmp_path, saved_model, jsonl, capsys):
    path, words = _broken(kind, tmp_path, saved_model)
    assert main(["probe", "--model", str(path), "--data", str(jsonl)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words[0] in err, err


def test_backbone_load_goes_through_the_same_loader(tmp_path, saved_model):
    from probsft.validate import backbone

    path, words = _broken("run folder", tmp_path, saved_model)
    with pytest.raises(UserError, match=words[0]):
        backbone.load(path)
    model, tok = backbone.load(path / "model")
    assert model.config.vocab_size == len(tok)
