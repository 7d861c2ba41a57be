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
"""

from __future__ import annotations

import functools

import torch

LOW = (torch.bfloat16, torch.float16)


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
