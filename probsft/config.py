"""Strict JSON round-trips and command-line flags for the frozen-dataclass configs (sim, validate).

A config loads only the keys its dataclass declares (an unknown key is a ConfigError, never
silently ignored); JSON lists become tuples (nested too), so the loaded config equals the one
saved and stays hashable. Values are checked by each dataclass's own ``__post_init__``.

A command's flags come from the same dataclass (:func:`add_config_flags`): one ``--flag`` per
field, typed from its annotation, with the help text and choices of ``field(metadata=...)``;
:func:`config_from_flags` merges a ``--config`` file with the flags given.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import types
import typing
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
    """Read a JSON config file strictly into ``cls``: the one way every area loads a config."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    return config_from_dict(cls, data)


def _flag_kind(hint, default):
    """(element type, nargs) of a field: X | None -> X; tuple[X, ...] -> (X, "+"); a bare
    ``tuple`` takes its element type from its default value."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_kind(args[0], default)
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0], "+"
        return args[0], len(args)
    if hint is tuple:
        return (type(default[0]) if isinstance(default, tuple) and default else str), "+"
    return hint, None


def _attribute_docs(cls) -> dict[str, str]:
    """``name: text`` entries of the "Attributes:" section of a class docstring."""
    docs, name, inside = {}, None, False
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside or not line.strip():
            continue
        if not line.startswith(" "):
            break
        head, sep, text = line.strip().partition(": ")
        if sep and line.startswith("    ") and not line.startswith("     ") and head.isidentifier():
            name = head
            docs[name] = text.strip()
        elif name:
            docs[name] += " " + line.strip()
    return docs


def add_config_flags(parser, cls, exclude=()) -> None:
    """Add ``--field-name`` for every field of config dataclass ``cls`` (but ``exclude``).

    Every flag defaults to None (keep the config's value); a bool field gets ``--x/--no-x``; a
    tuple field takes one or more values. Help comes from ``field(metadata={"help": ...})`` or
    else the class docstring's "Attributes:" entry; choices from ``metadata["choices"]``.
    """
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kind, nargs = _flag_kind(hints[f.name], f.default)
        flag = "--" + f.name.replace("_", "-")
        options = {"dest": f.name, "default": None,
                   "help": f.metadata.get("help", docs.get(f.name))}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        else:
            parser.add_argument(flag, type=kind, nargs=nargs, choices=f.metadata.get("choices"),
                                **options)


def flag_values(cls, args) -> dict:
    """The fields of ``cls`` given as flags in ``args`` (those not None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def config_from_flags(cls, args, path=None, required=(), drop_when_given=None):
    """``cls`` from the JSON file ``path`` (if any) with the fields given as flags in ``args``
    replacing its values; ConfigError when a ``required`` field is set by neither.

    ``drop_when_given`` maps a flag's field to fields of the file it invalidates (e.g. a new
    ``data`` file drops the recorded ``data_sha256`` of the old one)."""
    base = config_to_dict(load_config(cls, path)) if path else {}
    flags = flag_values(cls, args)
    for given, dropped in (drop_when_given or {}).items():
        if given in flags:
            for name in dropped:
                base.pop(name, None)
    merged = {**base, **flags}
    missing = [name for name in required if merged.get(name) is None]
    if missing:
        raise ConfigError(f"needs {' and '.join('--' + m.replace('_', '-') for m in missing)} "
                          "(or a --config that sets them)")
    return config_from_dict(cls, merged)
