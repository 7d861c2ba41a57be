"""Crash-safe files: every result is written to ``<name>.tmp``, flushed, then renamed onto its name.

A crash or a full disk leaves the old file or the new one, never half of one, and never a stray
``.tmp`` (it is removed when the write fails). The one place in probsft that writes result files.

    >>> atomic_write(out / "results.csv", text)          # str or bytes
    >>> atomic_write_json(out / "metrics.json", {"train/loss": 1.2})
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write(path, data: str | bytes) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path, obj, indent: int = 2) -> Path:
    return atomic_write(path, json.dumps(obj, indent=indent, default=str) + "\n")
