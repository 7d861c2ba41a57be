"""Crash-safe result files: an interrupted write leaves the old file; torn log lines are dropped."""

import json
import os

import pytest

from probsft.validate import store


def test_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    store.atomic_write_json(path, {"a": 1})

    def crash(src, dst):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}


def test_truncate_jsonl_drops_later_steps_and_a_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "train/lo')
    store.truncate_jsonl(path, 2)
    assert store.read_jsonl_records(path) == [{"step": 1}, {"step": 2}]
    store.atomic_write_csv(tmp_path / "m.csv", [{"step": 1, "x": 0.5}, {"step": 2, "y": 1}])
    assert (tmp_path / "m.csv").read_text().splitlines() == ["step,x,y", "1,0.5,", "2,,1"]


def test_a_checkpoint_on_a_full_disk_leaves_no_tmp_file(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "checkpoint.pt"
    store.atomic_torch_save(path, {"step": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        store.atomic_torch_save(path, {"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    import torch

    assert torch.load(path)["step"] == 1
