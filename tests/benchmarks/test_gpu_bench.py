"""benchmarks/gpu_bench.py: its CPU dry run (the GPU script's code path at tiny sizes) runs, writes
the promised JSON/markdown, and ours matches naive there; the report's target verdicts.
Exactness only: times live in benchmarks/ and docs/, not in tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_report  # noqa: E402

SPECS = ("nll", "p", "alpha(5)", "deft")


@pytest.mark.slow
def test_dry_run_writes_every_spec_and_ours_matches_naive(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OUT="")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_bench.py", "--dry-run", "--out",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"env", "config", "fused", "finetune", "fused_summary", "finetune_best",
            "targets_met", "wall_s"} <= set(data)
    assert data["config"]["dry_run"] and data["config"]["specs"] == list(SPECS)
    rows = {(r["spec"], r["method"]): r for r in data["fused"]}
    for spec in SPECS:
        naive, ours = rows[(spec, "naive")], rows[(spec, "ours")]
        assert "error" not in naive and "error" not in ours, (naive, ours)
        assert ours["loss_rel_err"] < 1e-5 and ours["grad_rel_err"] < 1e-5, ours   # float32
        for variant in ("ours-token", "ours-half"):       # the schedule and chunk alternatives
            assert "error" not in rows[(spec, variant)] and \
                rows[(spec, variant)]["grad_rel_err"] < 1e-5, rows[(spec, variant)]
        trl = rows[(spec, "trl")]          # installed with the validate extra: must run, exactly
        assert "error" not in trl and trl["grad_rel_err"] < 1e-5, trl
    for method in ("cce", "liger"):        # NLL-only baselines: a number or a reported absence
        r = rows[("nll", method)]
        assert "seconds" in r or r["error"], r
    assert {s["spec"] for s in data["fused_summary"]} == set(SPECS)
    sections = {r["section"]: r for r in data["finetune_best"]}
    assert set(sections) == {name for name, _, _ in __import__("gpu_finetune").SECTIONS}
    for r in sections.values():
        assert "error" not in r and r["tokens_per_s"] > 0, r
    md = (tmp_path / "results.md").read_text()
    assert "## Targets" in md and "## Runner vs HF Trainer" in md
    assert all(f"| {spec} |" in md for spec in SPECS)


def _row(method, spec, seconds, peak, shape="s"):
    return {"shape": shape, "spec": spec, "method": method, "seconds": seconds, "peak_mib": peak}


def test_targets_compare_ours_for_every_f_with_cce_nll():
    data = {"fused": [_row("naive", "nll", 2.0, 1000), _row("cce", "nll", 1.0, 100),
                      _row("ours", "nll", 1.1, 140), _row("naive", "p", 2.0, 1000),
                      _row("ours", "p", 1.3, 120),
                      {"shape": "s", "spec": "nll", "method": "liger", "error": "not installed: x"}],
            "finetune": []}
    out = gpu_report.summarise(data)
    by = {s["spec"]: s for s in out["fused_summary"]}
    assert by["nll"]["time_vs_cce"] == pytest.approx(1.1) and by["nll"]["time_target"] == "pass"
    assert by["nll"]["memory_target"] == "pass" and by["nll"]["time_vs_liger"] is None
    assert by["p"]["time_target"] == "fail" and by["p"]["mem_vs_cce"] == pytest.approx(1.2)
    assert by["p"]["time_vs_naive"] == pytest.approx(0.65)
    assert not out["targets_met"]


def test_targets_not_applicable_without_cce():
    data = {"fused": [_row("ours", "nll", 1.0, 10),
                      {"shape": "s", "spec": "nll", "method": "cce",
                       "error": "not installed: No module named 'cut_cross_entropy'"}],
            "finetune": []}
    s = gpu_report.summarise(data)["fused_summary"][0]
    assert s["time_target"].startswith("n/a (not installed") and s["time_vs_cce"] is None


@pytest.mark.slow
def test_dry_run_fine_tunes_the_shipped_medium_folder(tmp_path):
    """The GPU default model (the shipped medium backbone) through the same code path on CPU."""
    import gpu_finetune

    env = dict(os.environ, PYTHONPATH=str(ROOT), OUT="")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_bench.py", "--dry-run", "--sections",
                           "finetune", "--model", gpu_finetune.MEDIUM, "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["model"] == gpu_finetune.MEDIUM
    for r in data["finetune_best"]:
        assert "error" not in r and r["tokens_per_s"] > 0, r
        assert r["seq"] == 64                      # the dry run's length, under the medium's 256
