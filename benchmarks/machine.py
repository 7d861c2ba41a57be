"""The machine a benchmark ran on, as one printed line: CPU model and the vector/matrix features
probsft reads (probsft.theory.fused_auto.cpu_features), torch version, threads and load average.

    >>> print(cpu_line())
    CPU: AMD EPYC | capability=AVX2, avx2=True, ... | torch 2.13.0+cpu, 1 threads | load average 2.1 ...
"""

from __future__ import annotations

import os


def cpu_line() -> str:
    """The CPU features line the benchmarks print first (bf16 GEMMs are fast only with
    AVX512-BF16/AMX; other processes' load shows in the load average)."""
    import torch

    from probsft.theory.fused_auto import cpu_features

    feats = dict(cpu_features())
    return (f"CPU: {feats.pop('model')} | " + ", ".join(f"{k}={v}" for k, v in feats.items())
            + f" | torch {torch.__version__}, {torch.get_num_threads()} threads"
            + f" | load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def save_result(out, name: str, results: dict):
    """Write a benchmark's ``results`` as ``<out>/<name>`` (JSON, atomically; floats to
    probsft.files.SIGNIFICANT digits) and say where; the path."""
    from pathlib import Path

    from probsft.files import atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = atomic_write_json(out / name, results)
    print(f"wrote {out / name}")
    return path
