"""One cached virtual environment per SFT framework, for the adapter tests.

The frameworks pin versions that clash with probsft's own environment (ms-swift ``trl<1.0``,
LLaMA-Factory ``transformers<=5.6``, verl ``transformers<5.11``), so each runs in its own plain venv:
the CPU torch first (``torch==2.13.0``, also as a constraint: a framework pulling torchvision or
torchaudio must not upgrade it to a multi-GB CUDA build), then the pinned framework and probsft's
numeric dependencies. probsft itself is not installed there: the checkout goes on PYTHONPATH, so
the venv serves any checkout.

Cache: ~/.cache/probsft/venvs/<name>-<hash of python version + requirements> (``PROBSFT_VENV_CACHE``
moves it). The file ``build_seconds`` (the build time) is written last: a venv without it is a
broken or interrupted build, removed and built again. The pip log is kept next to it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TORCH = "torch==2.13.0"
PROBSFT_DEPS = ("numpy==2.4.6", "scipy==1.17.1", "sympy==1.14.0", "tqdm==4.70.1")
# axolotl's exact pins do not resolve with these numpy/scipy pins (pip: ResolutionImpossible);
# there probsft takes the numpy and scipy that axolotl's own dependencies choose.
PROBSFT_DEPS_FOR = {"axolotl": ("numpy", "scipy", "sympy==1.14.0", "tqdm")}

# The framework's pins, and the versions of its clashing dependencies it resolved to (2026-12).
REQUIREMENTS = {
    "swift": ("ms-swift==4.6.0", "transformers==5.19.0", "trl==0.29.1", "peft==0.20.0",
              "datasets==4.8.4", "accelerate==1.16.0"),
    "verl": ("verl==0.9.1", "transformers==5.10.4", "tensordict==0.10.0", "peft==0.21.2",
             "datasets==5.2.0", "accelerate==1.16.0"),
    "llamafactory": ("llamafactory==0.9.5", "transformers==5.6.0", "trl==0.24.0"),
    "axolotl": ("axolotl==0.19.0",),          # pins transformers==5.16.1, trl==1.9.0 itself
}

# LLaMA-Factory requires torchvision and torchaudio. PyPI has no torchaudio for torch 2.13 (newest:
# 2.11.1), and its compiled extension, like PyPI's CUDA-built torchvision 0.28, does not load with
# the CPU torch 2.13 ("Could not load this library: .../_torchaudio.so", "operator torchvision::nms
# does not exist"). LLaMA-Factory imports torchaudio unconditionally (data/mm_plugin.py) but text SFT
# never calls it, and torchaudio imports without its extension when the .so files are absent; so:
# uninstall torchvision (transformers does without it) and delete torchaudio's .so files.
UNINSTALL = {"llamafactory": ("torchvision",)}
DELETE_GLOBS = {"llamafactory": ("torchaudio/lib/*.so",)}


def probsft_deps(name: str) -> tuple:
    return PROBSFT_DEPS_FOR.get(name, PROBSFT_DEPS)


def cache_root() -> Path:
    return Path(os.environ.get("PROBSFT_VENV_CACHE", Path.home() / ".cache" / "probsft" / "venvs"))


def venv_dir(name: str) -> Path:
    reqs = "\n".join((sys.version.split()[0], TORCH, *probsft_deps(name), *REQUIREMENTS[name],
                      *UNINSTALL.get(name, ()), *DELETE_GLOBS.get(name, ())))
    return cache_root() / f"{name}-{hashlib.sha256(reqs.encode()).hexdigest()[:12]}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure(name: str) -> Path:
    """The venv for framework ``name``, built (minutes) on first use; RuntimeError with the pip log's
    tail when it cannot be built."""
    target = venv_dir(name)
    if (target / "build_seconds").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)         # an unfinished build
    start = time.monotonic()
    log = target.parent / f"{target.name}.log"
    constraint = target.parent / f"{target.name}.constraints.txt"
    constraint.write_text(TORCH + "\n")
    with open(log, "w") as fh:
        def run(*cmd):
            if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode:
                fh.flush()
                tail = log.read_text().splitlines()[-15:]
                raise RuntimeError(f"building the {name} venv failed: {' '.join(cmd)}\n" + "\n".join(tail))

        run(sys.executable, "-m", "venv", str(target))
        pip = (str(python_of(target)), "-m", "pip", "install", "-q", "-c", str(constraint))
        run(*pip, TORCH)
        run(*pip, *probsft_deps(name), *REQUIREMENTS[name])
        if UNINSTALL.get(name):
            run(str(python_of(target)), "-m", "pip", "uninstall", "-y", "-q", *UNINSTALL[name])
    site = next((target / "lib").glob("python3*/site-packages"))
    for pattern in DELETE_GLOBS.get(name, ()):
        for path in site.glob(pattern):
            path.unlink()
    (target / "build_seconds").write_text(f"{time.monotonic() - start:.0f}\n")
    return target
