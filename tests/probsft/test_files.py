"""probsft.files: atomic files and folders, output-folder locks and checks, numbered stale sets."""

import errno
import hashlib
import os

import pytest

from probsft.errors import UserError
from probsft.files import (LOCK_NAME, atomic_dir, atomic_write, locked_output, output_file,
                           output_folder, set_aside, sha256_file)


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_on_a_full_disk_leaves_the_old_file_and_no_tmp(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_write(path, b"old")
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_atomic_dir_replaces_whole_or_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("half")
            raise RuntimeError("disk full halfway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in target.iterdir()] == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_second_lock_on_one_folder_fails_at_once(tmp_path):
    out = tmp_path / "run"
    with locked_output(out, "--output"):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(UserError, match=r"--output .*run is in use by another probsft run"):
            with locked_output(out, "--output"):
                pass
    with locked_output(out, "--output"):          # released: the next run gets it
        pass
    assert not (out / LOCK_NAME).exists()


def test_a_folder_above_or_below_a_locked_one_is_refused(tmp_path):
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(        # another process holds results/validate
        [sys.executable, "-c", "import sys, time; from probsft.files import locked_output\n"
         f"with locked_output({str(tmp_path / 'results' / 'validate')!r}):\n"
         "    print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for path in (tmp_path / "results", tmp_path / "results" / "validate" / "sub"):
            with pytest.raises(UserError, match=f"in use by another probsft run .pid {holder.pid}"):
                with locked_output(path, "--out"):
                    pass
        with locked_output(tmp_path / "results" / "sim", "--out"):     # a sibling is free
            pass
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with locked_output(tmp_path / "results", "--out"):    # the holder died: its lock died with it
        pass
    with locked_output(tmp_path / "results", "--out"):    # nesting inside one's own process is fine
        with locked_output(tmp_path / "results" / "validate", "--out"):
            pass


def test_lock_and_output_checks_refuse_a_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker, blocker / "sub"):
        with pytest.raises(UserError, match="a file is in the way"):
            with locked_output(path, "--out"):
                pass
    with pytest.raises(UserError, match="--json .* is a folder"):
        output_file(tmp_path, "--json")
    with pytest.raises(UserError, match="a file is in the way"):
        output_file(blocker / "x.json", "--json")
    assert output_file(tmp_path / "new" / "x.json", "--json").parent.is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write there"):
            output_folder(ro / "out", "--out")
    finally:
        ro.chmod(0o755)


def test_a_folder_that_cannot_be_written_is_one_user_error(tmp_path, monkeypatch):
    def denied(self, data):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "write_bytes", denied)
    with pytest.raises(UserError, match="cannot write there .Permission denied"):
        output_folder(tmp_path / "out", "--out")


def test_set_aside_numbers_sets_and_never_overwrites(tmp_path):
    assert set_aside(tmp_path, ["results.csv"]) is None
    for k, text in enumerate(["first", "second", "third"]):
        (tmp_path / "results.csv").write_text(text)
        (tmp_path / "config.json").write_text(text)
        set_aside(tmp_path, ["results.csv", "config.json", "probes.json"])
    assert (tmp_path / "results.csv.stale").read_text() == "first"
    assert (tmp_path / "results.csv.stale2").read_text() == "second"
    assert (tmp_path / "config.json.stale3").read_text() == "third"
    assert not (tmp_path / "results.csv").exists()


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    (tmp_path / "d").write_bytes(data)
    assert sha256_file(tmp_path / "d", block=1024) == hashlib.sha256(data).hexdigest()
