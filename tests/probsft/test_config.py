"""probsft.config: the strict JSON round-trip shared by every config dataclass."""

import dataclasses
import json

import pytest

from probsft.config import config_from_dict, config_to_dict, load_config
from probsft.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class _Cfg:
    steps: int = 3
    mix: tuple = (("a", 0.5), ("b", 0.5))


def test_round_trip_through_json_restores_nested_tuples(tmp_path):
    cfg = _Cfg(steps=7)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config_to_dict(cfg)))
    loaded = load_config(_Cfg, path)
    assert loaded == cfg and isinstance(loaded.mix[0], tuple)


@pytest.mark.parametrize("data", [{"steps": 1, "typo": 2}, [1, 2], "steps"])
def test_unknown_keys_and_non_objects_are_config_errors(data):
    with pytest.raises(ConfigError):
        config_from_dict(_Cfg, data)


@dataclasses.dataclass(frozen=True)
class _Flagged:
    """A config with one field of each kind.

    Attributes:
        name: a required string,
            documented over two lines.
        seeds: several ints.
    """

    name: str
    seeds: tuple = (0, 1)
    betas: tuple[float, float] = (0.9, 0.95)
    steps: int | None = dataclasses.field(default=None, metadata={"help": "optimizer steps"})
    fused: bool = False
    device: str = dataclasses.field(default="auto", metadata={"choices": ("auto", "cpu")})


def _parser():
    import argparse

    from probsft.config import add_config_flags

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_flags(parser, _Flagged)
    return parser


def test_flags_are_derived_from_every_field():
    parser = _parser()
    actions = {a.dest: a for a in parser._actions}
    assert {f.name for f in dataclasses.fields(_Flagged)} <= set(actions)
    assert actions["name"].help == "a required string, documented over two lines."
    assert actions["steps"].help == "optimizer steps" and actions["device"].choices == ("auto", "cpu")
    args = parser.parse_args(["--name", "x", "--seeds", "3", "4", "--betas", "0.5", "0.6",
                              "--no-fused", "--device", "cpu"])
    assert (args.seeds, args.betas, args.fused, args.steps) == ([3, 4], [0.5, 0.6], False, None)


def test_config_from_flags_overrides_the_file_and_names_what_is_missing(tmp_path):
    from probsft.config import config_from_flags

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "file", "seeds": [7], "fused": True}))
    cfg = config_from_flags(_Flagged, _parser().parse_args(["--seeds", "1", "2"]), path)
    assert cfg == _Flagged(name="file", seeds=(1, 2), fused=True)
    with pytest.raises(ConfigError, match="needs --name"):
        config_from_flags(_Flagged, _parser().parse_args([]), None, required=("name",))


@pytest.mark.parametrize("text, message", [(None, "does not exist"), ("{not json", "not valid JSON")])
def test_load_config_says_what_is_wrong_with_the_file(tmp_path, text, message):
    path = tmp_path / "c.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(_Cfg, path)


@pytest.mark.parametrize("command, cls, internal", [
    ("finetune", "probsft.validate.train:FinetuneConfig", {"data_sha256"}),   # recorded, not given
    ("simulate", "probsft.sim.config:SimConfig", set())])
def test_command_flags_cover_every_config_field(command, cls, internal):
    import importlib

    from probsft.cli import build_parser

    module, name = cls.split(":")
    config = getattr(importlib.import_module(module), name)
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    dests = {a.dest: a for a in sub._actions}
    for f in dataclasses.fields(config):
        if f.name not in internal:
            assert f.name in dests and dests[f.name].help, f.name
