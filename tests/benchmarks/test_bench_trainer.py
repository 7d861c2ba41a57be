"""benchmarks/bench_trainer.py at a tiny slice (the tiny shape, random init, a few steps): it writes
the promised JSON, and the runner and the Trainer trained on the same tokens, the same SFT.
Exactness only: times live in benchmarks/ and docs/, not in tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_slice_writes_ratios_and_both_sides_train_on_the_same_tokens(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "benchmarks/bench_trainer.py", "--size", "tiny",
                           "--steps", "4", "--batch-size", "3", "--repeats", "1", "--device", "cpu",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("CPU: ") and "avx2=" in proc.stdout.splitlines()[0]
    data = json.loads((tmp_path / "bench_trainer.json").read_text())
    assert {"config", "cpu", "params", "sections", "runs", "tokens_per_s_over_trainer",
            "steady_tokens_per_s_over_trainer", "peak_memory_over_trainer",
            "same_tokens"} <= set(data)
    assert data["params"] == 829_568 and data["config"]["steps"] == 4
    sections = data["sections"]
    assert set(sections) == {"trainer", "runner_nll", "runner_p"}
    tokens = {(s["input_tokens"], s["supervised_tokens"]) for s in sections.values()}
    assert data["same_tokens"] and len(tokens) == 1               # counted on each side
    (n_input, n_supervised), = tokens
    assert n_input > n_supervised > 0
    for s in sections.values():
        assert s["tokens_per_s"] > 0 and s["steady_tokens_per_s"] > 0
        assert s["memory_method"] in ("rss_hwm", "ru_maxrss_growth")
    for key in ("tokens_per_s_over_trainer", "steady_tokens_per_s_over_trainer",
                "peak_memory_over_trainer"):
        assert set(data[key]) == {"runner_nll", "runner_p"}
    assert set(data["overhead_vs_nll"]) == {"runner_p"}           # each objective over the nll
    # The same SFT: equal start, examples, order (both draw torch.randperm seeded 0), schedule and
    # optimizer, so the NLL runner's mean step loss is the Trainer's up to float rounding.
    assert sections["runner_nll"]["mean_loss"] == pytest.approx(sections["trainer"]["mean_loss"],
                                                                rel=1e-4)


def test_an_unknown_objective_is_one_error_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "benchmarks/bench_trainer.py", "--objectives", "nope",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.startswith("error: --objectives:")
    assert "Traceback" not in proc.stderr and not (tmp_path / "bench_trainer.json").exists()
