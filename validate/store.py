"""Crash-safe result files and strict frozen-dataclass configs for the validation runs.

Every result file is written atomically: to ``<name>.tmp`` first, then ``os.replace``d onto its
name, so a crash leaves either the old file or the new one, never half of one. The metrics log is
JSONL appended one flushed line per record; :func:`truncate_jsonl` cuts it back to a checkpoint's
step on resume (atomically too).

    >>> atomic_write_json(out / "metrics.json", {"train/loss": 1.2})
    >>> cfg = load_config(FinetuneConfig, "config.json")   # unknown key -> ConfigError
"""

from __future__ import annotations

import io
import json

from pathlib import Path

import torch

from probsft.config import config_from_dict, config_to_dict, load_config  # noqa: F401 (re-exported)
from probsft.files import atomic_write, atomic_write_json, json_text  # noqa: F401 (re-exported)
from probsft.files import atomic_write_csv as _write_csv




def atomic_write_csv(path, rows: list[dict]) -> Path:
    """Rows of dicts as CSV (floats to probsft.files.SIGNIFICANT digits); the header is the union
    of keys in first-seen order."""
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["step"]
    return _write_csv(path, rows, keys)


def atomic_torch_save(path, obj) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, buf.getvalue())


def append_jsonl(path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json_text(record, indent=None) + "\n")
        fh.flush()


def read_jsonl_records(path) -> list[dict]:
    """The complete records of a JSONL log (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_jsonl(path, max_step: int) -> None:
    """Keep the complete records with ``step <= max_step`` (drops a torn last line)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [rec for rec in read_jsonl_records(path) if rec.get("step", 0) <= max_step]
    atomic_write(path, "".join(json_text(rec, indent=None) + "\n" for rec in keep))

