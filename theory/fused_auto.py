"""What ``fused_linear_loss(..., impl="auto", schedule="auto", gemm="auto")`` runs, per device, CPU and
dtype: the rule measured by benchmarks/bench_fused.py (README, fused section).

CPU features are read once (:func:`cpu_features`). The rule:
  * gemm: "float32" for bf16/fp16 weights on a CPU without GEMM units for that dtype (no
    AVX512-BF16/AMX for bf16, no AVX512-FP16/AMX-FP16 for fp16): there a bf16 GEMM runs several
    times slower than a float32 one (AMD EPYC, AVX2: 5 vs 34 GFLOP/s), so the operands are upcast
    slice by slice (W in vocabulary slices; no float32 copy of W is ever whole). "input" otherwise.
  * schedule: "vocab" for bf16/fp16 weights on CPU (no float32 [V, H] accumulator), "token" otherwise
    (float32 weights: the accumulator is the gradient itself; CUDA: as measured in gpu_fused.py).
  * impl: "eager" (torch.compile of the elementwise chunk work did not pay on CPU; see the table).
  * layout of a logits chunk: "row" ([C, V] row-major, as ``h @ W.T`` gives it) or "col" (vocab-major,
    ``W @ h.T`` = [V, C] row-major, used through its transpose). Same GEMMs, same result up to
    float rounding; which one the BLAS runs faster depends on the CPU and its library (AMD EPYC,
    AVX2, MKL: the three products of a chunk take 0.84-0.94x the time vocab-major). On CPU it is
    **calibrated** once per machine (:func:`calibrated_layout`: both layouts' three products on one
    mid-size chunk, interleaved, best of 3, about a second) and cached in a JSON file
    (:func:`cache_path`) keyed by CPU model, capability, torch version, threads and dtype, so every
    later process on that machine makes the same choice. CUDA: "row" (as benchmarked on the H100).
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import torch

from probsft.files import atomic_write_json

LOW = (torch.bfloat16, torch.float16)
LAYOUTS = ("row", "col")
CALIBRATION_SHAPE = (256, 1024, 16384)          # tokens C, hidden H, vocabulary slice V
CALIBRATION_ROUNDS = 3


@functools.cache
def cpu_features() -> dict:
    """The CPU's vector/matrix features relevant to GEMM speed (read once per process)."""
    cpu = torch.cpu
    feats = {"capability": torch.backends.cpu.get_cpu_capability(),
             "avx2": cpu._is_avx2_supported(), "avx512": cpu._is_avx512_supported(),
             "avx512_bf16": cpu._is_avx512_bf16_supported(), "amx": cpu._is_amx_tile_supported(),
             "amx_fp16": cpu._is_amx_fp16_supported()}
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo")
                      if ln.startswith("flags")), [])
        models = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")]
    except OSError:                                       # not Linux: torch's view only
        flags, models = [], []
    feats["avx512_fp16"] = "avx512_fp16" in flags
    feats["model"] = models[0] if models else "?"
    return feats


def low_precision_gemm_units(dtype) -> bool:
    """Whether this CPU has hardware for ``dtype`` (bf16/fp16) GEMMs."""
    f = cpu_features()
    if dtype == torch.bfloat16:
        return f["avx512_bf16"] or f["amx"]
    return f["avx512_fp16"] or f["amx_fp16"]


def choose(weight: torch.Tensor, n_tokens: int, impl: str, schedule: str, gemm: str):
    """(impl, schedule, gemm dtype) for ``weight`` [V, H] and n_tokens; explicit choices are kept."""
    low = weight.dtype in LOW
    cpu = weight.device.type == "cpu"
    if schedule == "auto":
        schedule = "vocab" if low and cpu else "token"
    if impl == "auto":
        impl = "eager"
    if gemm == "auto":
        gemm = "float32" if low and cpu and not low_precision_gemm_units(weight.dtype) else "input"
    gemm_dtype = torch.float32 if gemm == "float32" and low else weight.dtype
    return impl, schedule, gemm_dtype


def choose_layout(device: torch.device, gemm_dtype, layout: str) -> str:
    """"row" or "col" for a logits chunk of GEMM dtype ``gemm_dtype`` on ``device``; explicit kept."""
    if layout != "auto":
        return layout
    if device.type != "cpu" or (gemm_dtype in LOW and not low_precision_gemm_units(gemm_dtype)):
        return "row"          # CUDA; or bf16/fp16 GEMMs asked for without units (never timed)
    return calibrated_layout(gemm_dtype)


def cache_path() -> Path:
    """$PROBSFT_CACHE_DIR, else $XDG_CACHE_HOME/probsft, else ~/.cache/probsft; the file
    fused_layout.json there. Delete it to calibrate again."""
    root = os.environ.get("PROBSFT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "probsft")
    return Path(root) / "fused_layout.json"


def machine_key(dtype) -> str:
    """What the calibration depends on: CPU model and capability, torch version, threads, dtype."""
    f = cpu_features()
    return (f"{f['model']} | {f['capability']} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | {str(dtype).replace('torch.', '')}")


def time_layouts(dtype, shape=CALIBRATION_SHAPE, rounds=CALIBRATION_ROUNDS) -> dict:
    """{"row": s, "col": s}: the best of ``rounds`` interleaved runs of one chunk's three products
    (logits, dhidden = G W, dW += G^T h) in each layout, on CPU, in ``dtype``."""
    C, H, V = shape
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(C, H, generator=gen).to(dtype)
    W = (torch.randn(V, H, generator=gen) * 0.02).to(dtype)
    G = (torch.randn(C, V, generator=gen) * 1e-3).to(dtype)
    GT = G.t().contiguous()
    gh, gW = torch.empty(C, H, dtype=dtype), torch.zeros(V, H, dtype=dtype)
    run = {"row": lambda: (h @ W.t(), torch.mm(G, W, out=gh), gW.addmm_(G.t(), h)),
           "col": lambda: (W @ h.t(), torch.mm(GT.t(), W, out=gh), gW.addmm_(GT, h))}
    best = {name: float("inf") for name in run}
    for round_ in range(rounds + 1):                                  # round 0: warm-up
        for name, fn in run.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


@functools.cache
def calibrated_layout(dtype) -> str:
    """This machine's faster logits layout for CPU GEMMs in ``dtype``: read from the cache file, or
    measured by :func:`time_layouts` and written there (kept in memory only if it is not writable)."""
    key, path = machine_key(dtype), cache_path()
    entries = read_calibration(path)
    if key in entries and entries[key].get("layout") in LAYOUTS:
        return entries[key]["layout"]
    seconds = time_layouts(dtype)
    layout = min(seconds, key=seconds.get)
    entries[key] = {"layout": layout, "seconds": seconds, "shape": list(CALIBRATION_SHAPE),
                    "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        atomic_write_json(path, entries)
    except OSError:
        pass                                   # read-only home: this process keeps its choice
    return layout


def read_calibration(path=None) -> dict:
    """The cache file's entries ({machine key: {"layout", "seconds", ...}}); {} if absent or bad."""
    try:
        entries = json.loads(Path(path or cache_path()).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
