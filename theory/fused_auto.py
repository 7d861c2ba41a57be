"""What ``fused_linear_loss(..., impl="auto", schedule="auto", gemm="auto", layout="auto")`` runs, per
device, CPU and dtype: rules where one choice is right everywhere, a calibration where the CPU decides.

CPU features are read once (:func:`cpu_features`).
  * schedule: "token" (3 GEMMs) for float32 weights (the float32 [V, H] accumulator is the gradient
    itself). For bf16/fp16 weights the accumulator is extra memory, twice the gradient's: on CUDA
    "vocab" (4 GEMMs, no accumulator; the target there is <= 1.5x cut-cross-entropy's memory, whose
    peak is about the bf16 gradient, so the accumulator alone would break it: arithmetic, not yet
    measured on a GPU, where benchmarks/gpu_fused.py times "ours" against "ours-token"); on CPU
    "token" where it fits the memory bound at this token count (probsft.theory.fused decides, from
    about N >= 5 (H + C) tokens on), "vocab" where it does not. Where it fits and the CPU has GEMM
    units for the dtype, the schedule is calibrated with the GEMM dtype (bf16 GEMMs may make the
    fourth GEMM cheap); without units both schedules run the same float32 GEMMs, so "token" by rule
    (0.75-0.78x the time of "vocab", docs/performance.md).
  * impl: "eager" (torch.compile of the elementwise chunk work did not pay on CPU).
  * gemm (bf16/fp16 weights): "input" runs the GEMMs in bf16, "float32" upcasts the operands slice by
    slice. On a CPU without GEMM units for the dtype (no AVX512-BF16/AMX for bf16, no
    AVX512-FP16/AMX-FP16 for fp16) a bf16 GEMM runs several times slower than a float32 one (AMD
    EPYC, AVX2: 5 vs 34 GFLOP/s), so it is "float32" there by rule and never timed. With units both
    are candidates: bf16 GEMMs move half the bytes but add dtype round trips around the float32
    softmax, and which wins depends on the CPU.
  * layout of a logits chunk: "row" ([C, V] row-major, as ``h @ W.T`` gives it) or "col" (vocab-major,
    ``W @ h.T`` = [V, C] row-major, used through its transpose). Same GEMMs, same result up to float
    rounding; which one the BLAS runs faster depends on the CPU and its library (AMD EPYC, AVX2, MKL:
    the three products of a chunk take 0.80-0.95x the time vocab-major, benchmarks/bench_layouts.py).
    CUDA: "row" (benchmarked).
On CPU the (schedule, gemm, layout) candidates left open are **calibrated** once per machine
(:func:`calibrated`): one forward + backward of the fused loss itself on a small problem per candidate,
interleaved, best of 3 (a second or two on 2 cores; where schedules are timed too, only on CPUs
with bf16/fp16 GEMM units, a problem 4x larger, :data:`SCHEDULE_CALIBRATION_SHAPE`, not timed on
such a CPU yet), and the fastest is cached in a JSON file (:func:`cache_path`) keyed by CPU model,
capability, torch version, threads, dtype, candidates and the problem's shape, so every later
process on that machine makes the same choice.
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
GEMMS = ("input", "float32")
LAYOUTS = ("row", "col")
CALIBRATION_SHAPE = (256, 512, 16384, 128)      # tokens N, hidden H, vocabulary V, chunk C
# where schedules are timed too: the token schedule's fixed cost (zeroing and rounding its [V, H]
# accumulator) and per-chunk cost (adding a chunk's product) count less at larger N and C, and it is
# only a candidate from N of about 5 (H + C) on, so 2 chunks of 128 tokens would bias against it
SCHEDULE_CALIBRATION_SHAPE = (1024, 512, 16384, 256)
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


def choose(weight: torch.Tensor, token_fits: bool, impl: str, schedule: str, gemm: str,
           layout: str = "auto", loss=None):
    """(impl, schedule, gemm dtype, layout) for ``weight`` [V, H]; explicit choices kept.
    ``token_fits``: whether the token schedule's float32 [V, H] accumulator keeps bf16/fp16 weights
    within the memory bound at this token count (probsft.theory.fused decides: it knows the memory).
    ``loss``: the fused loss function that a calibration times (passed in by probsft.theory.fused,
    which imports this module, so that the imports point one way)."""
    low = weight.dtype in LOW
    cpu = weight.device.type == "cpu"
    units = low and cpu and low_precision_gemm_units(weight.dtype)
    if schedule != "auto":
        schedules = (schedule,)
    elif low and cpu and token_fits:     # without units both run float32 GEMMs, 3 vs 4: token
        schedules = ("token", "vocab") if units and gemm != "float32" else ("token",)
    else:
        schedules = ("vocab",) if low else ("token",)
    if impl == "auto":
        impl = "eager"
    if gemm != "auto":
        gemms = (gemm,)
    else:
        gemms = GEMMS if units else ("float32",) if low and cpu else ("input",)
    layouts = (layout,) if layout != "auto" else LAYOUTS if cpu else ("row",)
    slow_low = low and cpu and not units and "input" in gemms        # bf16 GEMMs without units
    names = candidates(schedules, gemms, layouts)
    if len(names) > 1 and not slow_low:
        schedule, gemm, layout = calibrated(weight.dtype, names, loss)
    else:
        schedule, gemm, layout = schedules[0], gemms[0], layouts[0] if len(layouts) == 1 else "row"
    gemm_dtype = torch.float32 if gemm == "float32" and low else weight.dtype
    return impl, schedule, gemm_dtype, layout


def candidates(schedules, gemms, layouts) -> tuple:
    """The (schedule, gemm, layout) triples to time, as "schedule/gemm/layout" names."""
    return tuple(f"{s}/{g}/{lay}" for s in schedules for g in gemms for lay in layouts)


def cache_path() -> Path:
    """$PROBSFT_CACHE_DIR, else $XDG_CACHE_HOME/probsft, else ~/.cache/probsft; the file
    fused_calibration.json there. Delete it to calibrate again."""
    root = os.environ.get("PROBSFT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "probsft")
    return Path(root) / "fused_calibration.json"


def machine_key(dtype, names: tuple) -> str:
    """What a calibration depends on: CPU model and capability, torch version, threads, the weight
    dtype, the candidates and the problem timed."""
    f = cpu_features()
    return (f"{f['model']} | {f['capability']} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | {str(dtype).replace('torch.', '')} | "
            + " ".join(names) + " | N,H,V,C " + ",".join(map(str, calibration_shape(names))))


def calibration_shape(names: tuple) -> tuple:
    """(N, H, V, C) timed for these candidates: larger where they differ in schedule."""
    schedules = {name.split("/")[0] for name in names}
    return SCHEDULE_CALIBRATION_SHAPE if len(schedules) > 1 else CALIBRATION_SHAPE


def time_candidates(dtype, names: tuple, loss, shape=None, rounds=CALIBRATION_ROUNDS) -> dict:
    """{"schedule/gemm/layout": seconds}: the best of ``rounds`` interleaved forward + backward runs
    of the fused NLL ``loss`` (fused_linear_loss) on CPU for each candidate; ``shape`` = tokens,
    hidden, vocabulary, chunk (None: :func:`calibration_shape`)."""
    N, H, V, C = shape or calibration_shape(names)
    gen = torch.Generator().manual_seed(0)
    h = (torch.randn(N, H, generator=gen) * 0.5).to(dtype).requires_grad_()
    W = (torch.randn(V, H, generator=gen) * 0.02).to(dtype).requires_grad_()
    y = torch.randint(0, V, (N,), generator=gen)
    best = dict.fromkeys(names, float("inf"))
    for round_ in range(rounds + 1):                                  # round 0: warm-up
        for name in names:
            schedule, gemm, layout = name.split("/")
            h.grad = W.grad = None
            t0 = time.perf_counter()
            loss(h, W, y, "nll", chunk_size=C, schedule=schedule, gemm=gemm,
                 layout=layout, impl="eager").backward()
            if round_:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


@functools.cache
def calibrated(dtype, names: tuple, loss) -> tuple:
    """(schedule, gemm, layout): this machine's fastest candidate for ``dtype`` weights, read from the
    cache file, or measured by :func:`time_candidates` and written there (kept in memory only where the
    file cannot be written)."""
    key, path = machine_key(dtype, names), cache_path()
    entries = read_calibration(path)
    choice = entries.get(key, {}).get("choice") if isinstance(entries.get(key), dict) else None
    if choice not in names:
        seconds = time_candidates(dtype, names, loss)
        choice = min(seconds, key=seconds.get)
        entries[key] = {"choice": choice, "seconds": seconds, "shape": list(calibration_shape(names)),
                        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        try:
            atomic_write_json(path, entries)
        except OSError:
            pass                               # read-only home: this process keeps its choice
    return tuple(choice.split("/"))


def read_calibration(path=None) -> dict:
    """The cache file's entries ({machine key: {"choice", "seconds", ...}}); {} if absent or bad."""
    try:
        entries = json.loads(Path(path or cache_path()).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
