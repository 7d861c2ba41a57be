"""benchmarks/bench_layouts.py at one small chunk: it runs, prints the CPU line, the reference GEMM
and one row per chunk with both layouts' rates. Times live in docs/, not in tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_chunk_prints_both_layouts_and_the_reference():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "benchmarks/bench_layouts.py", "--shapes", "h1024-v65536",
                           "--chunks", "64", "--rounds", "1", "--square", "256"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "avx2=" in lines[0]
    assert re.fullmatch(r"reference: 256\^3 float32 GEMM [0-9.]+ GFLOP/s", lines[1])
    row = lines[-1].split()
    assert row[:2] == ["h1024-v65536", "64"] and all(float(x) > 0 for x in row[2:5])
