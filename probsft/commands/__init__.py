"""Subcommands of the `probsft` CLI; each module is thin and calls into theory/sim/validate."""

import argparse
import math


def _number_type(convert, ok, rule: str, kind: str = "number"):
    """An argparse type: ``convert(text)`` must succeed and satisfy ``ok`` (argparse reports the
    error as ``must be <rule>``)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__doc__ = f"argparse type: a {kind} that is {rule}"
    return parse


positive_int = _number_type(int, lambda v: v >= 1, ">= 1", "whole number")
"""Counts and sizes: a whole number >= 1."""
positive_float = _number_type(float, lambda v: 0 < v < math.inf, "a finite number > 0")
"""Rates: a finite number > 0."""
temperature = _number_type(float, lambda v: 0 <= v < math.inf, "a finite number >= 0 (0: greedy)")
"""A sampling temperature (0: greedy decoding)."""
probability = _number_type(float, lambda v: 0 < v <= 1, "in (0, 1]")
"""A nucleus mass (top-p)."""


def emit(result: dict, text: str, json_path) -> None:
    """A command's result: ``--json -`` prints it as JSON only; otherwise the human ``text``, and
    with ``--json PATH`` the JSON written atomically to PATH too (floats to 12 digits, both)."""
    from probsft.files import atomic_write_json, json_text

    if json_path == "-":
        print(json_text(result))
        return
    print(text)
    if json_path:
        atomic_write_json(json_path, result)
        print(f"wrote {json_path}")
