"""Strict JSON round-trips for the frozen-dataclass configs of every area (sim, validate).

A config loads only the keys its dataclass declares (an unknown key is a ConfigError, never
silently ignored); JSON lists become tuples (nested too), so the loaded config equals the one
saved and stays hashable. Values are checked by each dataclass's own ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from probsft.errors import ConfigError


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def config_to_dict(cfg) -> dict:
    """JSON-ready dict of a config dataclass (tuples as lists)."""
    return {f.name: _lists(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def config_from_dict(cls, data):
    """Build config ``cls`` strictly from a dict: unknown keys raise ConfigError; lists -> tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown key(s) {unknown}; valid keys: {names}")
    return cls(**{k: _tuples(v) for k, v in data.items()})


def load_config(cls, path):
    """Read a JSON config file strictly into ``cls``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    return config_from_dict(cls, data)
