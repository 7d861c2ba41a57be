"""Safe files and folders: the one place in probsft that writes results and guards output folders.

* :func:`atomic_write` (and :func:`atomic_write_json`, :func:`atomic_dir` for a whole folder such as
  a saved model): written to ``<name>.tmp``, flushed, then renamed onto its name. A crash or a full
  disk leaves the old file or the new one, never half of one, and never a stray ``.tmp`` (it is
  removed when the write fails).
* :func:`locked_output`: an exclusive lock on a run's output folder, held for the run, so two runs
  never write into one folder; it also checks, before any work, that the folder can be written
  (:func:`output_folder`; :func:`output_file` for a single result file).
* :func:`set_aside` keeps earlier results as numbered ``*.stale`` files; :func:`sha256_file` is the
  content hash a resumed run compares its inputs by.
* The float policy: every float a results file holds is written rounded to :data:`SIGNIFICANT`
  significant digits (:func:`round_float`, :func:`rounded`; :func:`json_text`, :func:`csv_text`,
  :func:`atomic_write_json`, :func:`atomic_write_csv` apply it). A float64 result differs between
  CPUs (AVX512/AMX kernels, BLAS blocking, thread counts) in its last bits, ~1e-16 relative; its
  shortest ``repr`` shows them, 12 digits do not, so a fresh clone's ``probsft reproduce`` rewrites
  the committed results byte for byte on any x86-64 CPU. (A value within ~1e-16 of a rounding
  boundary of the 12th digit can still flip: the chance is the difference over the 12th digit's
  step, ~1e-4 per ulp, for the few values that differ at all.) Configs are inputs, not results: they are written exactly (``digits=None``), as a
  resumed run compares them by equality.

    >>> atomic_write(out / "results.csv", text)          # str or bytes
    >>> atomic_write_json(out / "metrics.json", {"train/loss": 1.2})   # floats to 12 digits
    >>> atomic_write_csv(out / "results.csv", rows, COLUMNS)
    >>> with locked_output("runs/p", "--output") as out: ...
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path

SIGNIFICANT = 12
"""Significant digits of every float written to a results file (far above any result's precision,
far below float64's 15.95: the last-bit differences between CPUs never show)."""


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


def round_float(x: float, digits: int | None = SIGNIFICANT) -> float:
    """``x`` rounded to ``digits`` significant digits, ``float(f"{x:.12g}")`` (nan, inf and
    ``digits=None`` leave it as it is): 0.24999999999999997 and 0.24999999999999994 -> 0.25."""
    x = float(x)
    if digits is None or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def rounded(obj, digits: int | None = SIGNIFICANT):
    """``obj`` with every float rounded by :func:`round_float`, recursively through dicts, lists
    and tuples (tuples become lists, as in JSON); numpy and torch scalars and arrays become Python
    numbers and lists first. Ints, bools, str and None are kept as they are."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, float):                      # numpy float64 too (a float subclass)
        return round_float(obj, digits)
    if hasattr(obj, "tolist"):
        return rounded(obj.tolist(), digits)        # numpy / torch scalar or array
    return obj


def json_text(obj, indent: int | None = 2, digits: int | None = SIGNIFICANT) -> str:
    """``obj`` as JSON (no trailing newline) under the float policy; nan and inf are written as
    NaN and Infinity, which ``json.loads`` reads back; unknown objects (paths) as ``str``."""
    return json.dumps(rounded(obj, digits), indent=indent, default=str)


def csv_text(rows, fields, digits: int | None = SIGNIFICANT) -> str:
    """Rows of dicts as CSV text (header ``fields``, ``\\n`` line ends, '' for None or a missing
    key) under the float policy; a key not in ``fields`` is an error."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(rounded(row, digits))
    return buf.getvalue()


def atomic_write_json(path, obj, indent: int | None = 2, digits: int | None = SIGNIFICANT) -> Path:
    """:func:`json_text` of ``obj`` plus a newline, written atomically."""
    return atomic_write(path, json_text(obj, indent, digits) + "\n")


def atomic_write_csv(path, rows, fields, digits: int | None = SIGNIFICANT) -> Path:
    """:func:`csv_text` of ``rows`` written atomically."""
    return atomic_write(path, csv_text(rows, fields, digits))


def _user_error(message: str):
    from probsft.errors import UserError      # probsft.errors imports nothing: arrows point down

    return UserError(message)


def output_folder(path, flag: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents) now, before any work, or raise UserError:
    a file in the way and a folder that cannot be written are found here, not after the run."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probsft-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise _user_error(f"{flag} {path}: a file is in the way (the path or one of its parents is "
                          "a file); give a folder") from None
    except OSError as err:
        raise _user_error(f"{flag} {path}: cannot write there ({err.strerror}); give a writable "
                          "folder") from None
    return path


def output_file(path, flag: str = "--json") -> Path:
    """Check, before any work, that the single result file ``path`` can be written (UserError if
    not): it must not be a folder, and its folder must be creatable and writable."""
    path = Path(path)
    if path.is_dir():
        raise _user_error(f"{flag} {path} is a folder; give a file name")
    output_folder(path.parent, f"{flag} {path}: its folder")
    return path


LOCK_NAME = ".probsft.lock"


@contextlib.contextmanager
def locked_output(path, flag: str = "--out"):
    """Hold an exclusive lock on the output folder ``path`` for the duration of a run.

    Creates the folder (see :func:`output_folder`) and takes ``fcntl.flock`` on ``path/.probsft.lock``
    without waiting: a second run into the same folder fails at once with a UserError instead of
    interleaving its files with the first, and so does a run into a folder above or below one that
    a live run has locked. The lock dies with the process (a killed run never leaves a stale lock);
    the lock file is removed on release.

        >>> with locked_output(args.output, "--output") as out:
        ...     run(out)
    """
    import fcntl

    path = output_folder(path, flag)
    lock = path / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise _user_error(f"{flag} {path} is in use by another probsft run (pid {holder}); "
                              "wait for it to finish or choose another folder") from None
        try:                          # the holder before us may have removed the file: lock anew
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        nested = _run_around(path)
        if nested:
            where, holder = nested
            raise _user_error(f"{flag} {path}: {where} is in use by another probsft run (pid "
                              f"{holder}), which writes there too; wait for it to finish or "
                              "choose another folder")
        yield path
    finally:
        Path(lock).unlink(missing_ok=True)
        os.close(fd)                  # closing releases the flock


def _holder(lock: Path) -> str | None:
    """The pid of another live run that holds ``lock``, or None (a shared lock taken and dropped
    at once tells; the lock file of a run that died is not held)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if holder == str(os.getpid()):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder or "?"
        return None
    finally:
        os.close(fd)


def _run_around(path: Path) -> tuple[Path, str] | None:
    """(folder, pid) of a live run locking a folder above or below ``path`` (e.g. `reproduce` into
    results/ while `validate` writes results/validate), or None."""
    path = path.resolve()
    for folder in path.parents:
        holder = _holder(folder / LOCK_NAME)
        if holder:
            return folder, holder
    for root, dirs, files in os.walk(path):
        if LOCK_NAME in files and Path(root) != path:
            holder = _holder(Path(root) / LOCK_NAME)
            if holder:
                return Path(root), holder
    return None


@contextlib.contextmanager
def atomic_dir(path):
    """Write a whole folder atomically: yields ``<path>.tmp`` to fill; on success it replaces
    ``path`` (the old folder is removed after the swap); on failure the temporary folder is removed
    and ``path`` is left as it was.

        >>> with atomic_dir(out / "model") as tmp:
        ...     model.save_pretrained(tmp)
    """
    import shutil

    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def set_aside(folder, names) -> str | None:
    """Move the files ``names`` of ``folder`` to ``<name>.stale`` (or ``.stale2``, ``.stale3``... :
    the first suffix free for all of them), never overwriting an earlier set. Returns the suffix
    used, or None when none of the files exists."""
    folder = Path(folder)
    present = [n for n in names if (folder / n).exists()]
    if not present:
        return None
    k = 1
    while any((folder / f"{n}.stale{k if k > 1 else ''}").exists() for n in names):
        k += 1
    suffix = f".stale{k if k > 1 else ''}"
    for n in present:
        os.replace(folder / n, folder / f"{n}{suffix}")
    return suffix


def sha256_file(path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks (bounded memory)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()
