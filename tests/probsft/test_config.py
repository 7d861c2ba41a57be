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
