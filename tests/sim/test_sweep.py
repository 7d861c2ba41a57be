"""Sweeps: saved results, determinism, resume after interruption, the CLI."""

import json

import pytest

from probsft.cli import main
from probsft.config import load_config
from probsft.errors import ConfigError
from probsft.sim import sweep
from probsft.sim.config import SimConfig
from probsft.sim.sweep import read_rows, run_sweep

CFG = SimConfig(mode="learning", objectives=("nll", "p", "nll@p>=0.2"), prior_strengths=(0.0, 1.0),
                noise_rates=(0.0, 0.3), seeds=(0, 1), vocab_size=8, contexts=64, eval_contexts=64,
                feature_dim=6, steps=30, lr=1.0)


def test_sweep_saves_config_and_rows_deterministically(tmp_path):
    rows = run_sweep(CFG, tmp_path / "a", progress=False)
    assert len(rows) == 3 * 2 * 2 * 2
    assert load_config(SimConfig, tmp_path / "a" / "config.json") == CFG
    again = run_sweep(CFG, tmp_path / "b", progress=False)
    assert read_rows(tmp_path / "a" / "results.csv") == read_rows(tmp_path / "b" / "results.csv")
    assert rows == again
    assert all(r["diverged"] == 0 for r in rows)


def test_interrupted_sweep_resumes_skipping_finished_objectives(tmp_path, monkeypatch):
    full = run_sweep(CFG, tmp_path / "full", progress=False)
    calls = []
    real = sweep.run_objective

    def interrupted(cfg, spec, batch):
        calls.append(spec)
        if spec == "nll@p>=0.2":
            raise KeyboardInterrupt
        return real(cfg, spec, batch)

    monkeypatch.setattr(sweep, "run_objective", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(CFG, tmp_path / "r", progress=False)
    assert {r["objective"] for r in read_rows(tmp_path / "r" / "results.csv")} == {"nll", "p"}
    calls.clear()
    monkeypatch.setattr(sweep, "run_objective", lambda *a: calls.append(a[1]) or real(*a))
    resumed = run_sweep(CFG, tmp_path / "r", progress=False)
    assert calls == ["nll@p>=0.2"]
    assert resumed == full


def test_a_different_config_in_the_same_folder_is_refused(tmp_path):
    run_sweep(CFG, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different config"):
        run_sweep(CFG.replace(steps=31), tmp_path, progress=False)


def test_cli_runs_a_config_file_with_flag_overrides(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps(CFG.to_dict()))
    rc = main(["simulate", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "o"),
               "--seeds", "5", "--objectives", "nll", "p"])
    assert rc == 0
    rows = read_rows(tmp_path / "o" / "results.csv")
    assert {r["seed"] for r in rows} == {5} and {r["objective"] for r in rows} == {"nll", "p"}
    # the figure goes into --out itself, never beside it
    assert (tmp_path / "o" / "sim_custom.png").exists() and (tmp_path / "o" / "sim_custom.svg").exists()
    assert not (tmp_path / "sim_custom.png").exists()


def test_cli_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"mode": "theory", "bogus": 1}))
    assert main(["simulate", "--config", str(tmp_path / "bad.json")]) == 2
    assert main(["simulate", "--preset", "phase", "--lr", "-1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "bogus" in err[0] and "lr" in err[1]


def test_cli_out_dot_links_its_figure_by_a_relative_path(tmp_path, capsys, monkeypatch):
    (tmp_path / "c.json").write_text(json.dumps(CFG.to_dict()))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["simulate", "--config", str(tmp_path / "c.json"), "--out", ".", "--seeds", "5",
                 "--objectives", "nll", "p"]) == 0
    out = capsys.readouterr().out
    assert "figure: sim_custom.png" in out and "/sim_custom.png" not in out
    assert (tmp_path / "here" / "sim_custom.png").exists()
