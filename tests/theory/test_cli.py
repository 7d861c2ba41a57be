"""`probsft describe` and `probsft weights`, and the theory reproduce step (files, then figure).
Run: python -m pytest tests/theory/test_cli.py
"""

import csv
import json

import pytest
from probsft.figures.weights import draw
from probsft.reproduce.theory import render
from probsft.theory.tables import FIG3

from probsft.cli import main


def test_describe_json(capsys):
    assert main(["describe", "alpha(0.5)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("f", "s_f", "W_f", "peak", "class", "convexity", "tau", "mass_above_tau",
                "uniform_prior_vs_nll"):
        assert key in out
    assert out["peak_exact"] == "1/3" and out["class"] == "prior-averse"       # peak 1/3 < 1/2
    assert out["class_vs_nll"] == "prior-leaning" and out["class_tau"] == "prior-averse"
    assert "1/2" in out["class_reason"]
    assert out["uniform_prior_vs_nll"]["winner_below"] == "nll"
    assert out["uniform_prior_vs_nll"]["e_star"] == pytest.approx(0.999)


@pytest.mark.parametrize("spec", ["p", "nll@p>=0.2"])
def test_describe_json_calls_the_paper_s_prior_leaning_objectives_prior_leaning(spec, capsys):
    assert main(["describe", spec, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["class"] == "prior-leaning"


def test_describe_text_and_tau(capsys):
    assert main(["describe", "p", "--tau", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "prior-leaning" in out and "1/2" in out


@pytest.mark.parametrize("argv", [["describe", "p**2"], ["describe", "nll", "--tau", "2"],
                                  ["weights", "nll", "bogus(", "--out", "OUT"]])
def test_bad_input_exits_2_without_traceback(argv, capsys, tmp_path):
    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("probsft ") and "error:" in err.splitlines()[0]
    assert "Traceback" not in err


def test_weights_command_writes_files(tmp_path, capsys):
    assert main(["weights", "nll", "p", "(1-p**3)/3", "nll@p>=0.2", "--out", str(tmp_path),
                 "--no-normalise"]) == 0
    for name in ("weights.png", "weights.svg", "weights.csv", "weights.md", "weights_curves.csv"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "weights.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["spec"] for r in rows] == ["nll", "p", "expr:1/3 - p**3/3", "nll@p>=0.2"]
    assert float(rows[2]["peak"]) == pytest.approx(0.75)


def test_figure_is_a_pure_function_of_saved_files(tmp_path):
    render(FIG3, tmp_path / "a")
    paths = draw(tmp_path / "a" / "weights_curves.csv", tmp_path / "a" / "weights.csv",
                 tmp_path / "b" / "fig")
    assert all(p.stat().st_size > 0 for p in paths)
    with open(tmp_path / "a" / "weights_curves.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["p_grid", *FIG3]
