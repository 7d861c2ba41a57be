"""The within-task dial and the registered held-out test, on synthetic inputs whose answer is known:
positions chosen by the build probe alone, rows merged per checkpoint, crossovers located within
each task, and the frozen rule scored against the constants."""

import json
import math

import pytest

from probsft.continuum import dial as dl
from probsft.continuum import experiment as ex
from probsft.continuum.curve import Curve
from probsft.continuum.heldout import TARGET, registered_test, verdict
from probsft.errors import UserError


def _checkpoints():
    """Three tasks read at six steps: t_a rises 0.05 -> 0.95, t_b rises slowly, t_c stays weak."""
    steps = (100, 200, 300, 400, 500, 600)
    a = (0.05, 0.28, 0.52, 0.71, 0.86, 0.95)
    b = (0.09, 0.12, 0.31, 0.5, 0.66, 0.84)
    return {k: {"t_a": {"answer_p": pa}, "t_b": {"answer_p": pb}, "t_c": {"answer_p": 0.04}}
            for k, pa, pb in zip(steps, a, b)}


def test_positions_are_the_steps_nearest_the_targets_per_task():
    pos = dl.positions_of(_checkpoints(), ("t_a", "t_b"))
    assert pos == [("t_a", 100), ("t_a", 200), ("t_a", 300), ("t_a", 400), ("t_a", 500),
                   ("t_b", 100), ("t_b", 300), ("t_b", 400), ("t_b", 500), ("t_b", 600)]
    with pytest.raises(UserError, match="checkpoints for 5 targets"):
        dl.positions_of({100: {"t_a": {"answer_p": 0.1}}}, ("t_a",))


def test_position_names_carry_task_and_step():
    assert dl.position_name("t_rol", 250) == "t_rol@250"
    assert dl.task_of("t_rol@250") == "t_rol" and dl.task_of("t_rol") == "t_rol"


def test_a_missing_build_is_one_clear_error(tmp_path):
    d = dl.Dial("x", "nowhere", 7, ("t_rol",), "validate_x")
    with pytest.raises(UserError, match="--seed 7 --dial-steps 600"):
        d.checkpoints(tmp_path)


def test_rows_of_every_checkpoint_are_merged_and_renamed(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "build.json").write_text(json.dumps({"checkpoints": {
        str(k): v for k, v in _checkpoints().items()}}))
    d = dl.Dial("x", "unused", 0, ("t_a",), "validate_x")
    out = tmp_path / "res"
    for step in (100, 200, 600):          # 600 is not a position of t_a: its rows are left out
        row = {f: "" for f in ex.FIELDS}
        ex.write_rows(out / f"step_{step}" / "results.csv",
                      [dict(row, position="t_a", objective="nll"),
                       dict(row, position="t_b", objective="nll")])
    positions = dl.build_record(d, out, build)["positions"]
    assert [(p["position"], p["build_answer_p"]) for p in positions][:2] == [
        ("t_a@100", 0.05), ("t_a@200", 0.28)]
    merged = dl.rows(out, positions)
    assert [r["position"] for r in merged] == ["t_a@100", "t_a@200"]


def _p_cells(task, ps, deltas, sup="token", opt="adamw"):
    return [{"position": f"{task}@{i}", "probe_answer_p": p, "supervision": sup, "optimizer": opt,
             "objective": "p", "delta": d, "per_seed": [d - 1.0, d, d + 1.0]}
            for i, (p, d) in enumerate(zip(ps, deltas))]


def test_crossover_is_located_within_each_task_and_compared_between_tasks():
    ps = (0.1, 0.3, 0.5, 0.7, 0.9)
    early = _p_cells("t_a", ps, (-20, -10, 10, 20, 30))       # crosses between 0.3 and 0.5
    late = _p_cells("t_b", ps, (-30, -25, -20, -10, 10))      # crosses between 0.7 and 0.9
    xs = dl.task_crossovers(early + late)
    by = {x["task"]: x for x in xs}
    assert 0.3 < by["t_a"]["p"] < 0.5 and 0.7 < by["t_b"]["p"] < 0.9
    assert dl.crossover_moves(xs) == {"token/adamw": "moves"}
    same = dl.task_crossovers(early + _p_cells("t_b", ps, (-20, -10, 10, 20, 30)))
    assert dl.crossover_moves(same) == {"token/adamw": "not shown"}
    assert dl.crossover_moves(dl.task_crossovers(early)) == {"token/adamw": "cannot tell"}


def _cells(best_at, positions, gain=10.0, sup="token"):
    """Cells where ``best_at(p)`` beats the others by ``gain`` points (tight CIs); NLL is 0."""
    cells = []
    for name, p in positions:
        for spec in ("p", "deft"):
            d = gain if best_at(p) == spec else -gain
            cells.append({"position": name, "probe_answer_p": p, "supervision": sup,
                          "optimizer": "adamw", "objective": spec, "delta": d,
                          "ci_low": d - 1.0, "ci_high": d + 1.0, "verdict": ""})
    return cells


FLIP = lambda p: "nll" if p < 0.5 else "p"                        # noqa: E731


def _curve(best_at, width=0.1):
    fit = _cells(best_at, [(f"t_a@{i}", 0.05 + 0.1 * i) for i in range(10)])
    return Curve(tuple(fit), {"band": width, "delta": width}, ("synthetic",)), fit


def test_the_frozen_rule_wins_where_the_best_objective_flips_with_p():
    curve, fit = _curve(FLIP)
    held = _cells(FLIP, [(f"t_h@{i}", 0.08 + 0.09 * i) for i in range(10)])
    t = registered_test(curve, held, fit_cells=fit)
    assert t["hit_rates"]["rule"]["informative"] == 100.0
    assert t["picks"]["t_h@0/token/adamw"] == "nll" and t["picks"]["t_h@9/token/adamw"] == "p"
    # the best constant after seeing the held-out cells: NLL or -p, each right at 5 of 10
    assert t["best_constant"] == "nll" and t["vs_best_constant"]["delta"] == pytest.approx(50.0)
    assert t["vs_best_constant"]["verdict"] == "confirmed"
    # the lookup reads no position: one answer everywhere
    assert t["hit_rates"]["lookup"]["informative"] < 100.0


def test_the_frozen_rule_is_refuted_where_one_constant_is_best_everywhere():
    curve, fit = _curve(FLIP)
    held = _cells(lambda p: "deft", [(f"t_h@{i}", 0.1 + 0.2 * i) for i in range(5)])
    t = registered_test(curve, held, fit_cells=fit)
    assert t["best_constant"] == "deft"
    assert t["vs_best_constant"]["delta"] == pytest.approx(-100.0)
    assert t["vs_best_constant"]["verdict"] == "refuted"


def test_cells_where_everything_ties_are_left_out_of_the_primary_comparison():
    curve, fit = _curve(FLIP)
    held = [dict(c, delta=0.0, ci_low=-1.0, ci_high=1.0)
            for c in _cells(FLIP, [(f"t_h@{i}", 0.1 + 0.2 * i) for i in range(5)])]
    t = registered_test(curve, held, fit_cells=fit)
    assert t["informative_cells"] == 0 and t["cells"] == 5
    assert math.isnan(t["vs_best_constant"]["delta"])
    assert t["vs_best_constant"]["verdict"] == "inconclusive"


def test_verdicts_of_the_registered_target():
    assert verdict(TARGET + 5, (2.0, 30.0)) == "confirmed"
    assert verdict(TARGET + 5, (-1.0, 30.0)) == "inconclusive"
    assert verdict(1.0, (-3.0, TARGET - 0.5)) == "refuted"
    assert verdict(math.nan, (math.nan, math.nan)) == "inconclusive"


def test_the_dial_figure_draws_each_task_and_its_crossover_from_saved_verdicts(tmp_path):
    from probsft.figures.dial import draw

    ps = (0.1, 0.3, 0.5, 0.7, 0.9)
    cells = [dict(c, ci_low=c["delta"] - 3, ci_high=c["delta"] + 3)
             for c in _p_cells("t_a", ps, (-20, -10, 10, 20, 30))
             + _p_cells("t_b", ps, (-30, -25, -20, -10, 10), sup="clean")]
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps({"cells": cells, "task_crossovers": dl.task_crossovers(cells)}))
    png, svg = draw(path, tmp_path / "dial")
    text = svg.read_text()
    assert png.stat().st_size > 10_000
    assert "#1f77b4" in text and "#ff7f0e" in text          # one colour per task


def test_validate_dial_refuses_bad_input_in_one_line(tmp_path, capsys):
    from probsft.cli import main

    assert main(["validate", "--dial", "nope"]) == 2
    assert "unknown dial 'nope'; registered: fit, heldout, medium" in capsys.readouterr().err
    assert main(["validate", "--dial", "fit", "--tasks", "t_rol"]) == 2
    assert "--tasks do(es) not apply" in capsys.readouterr().err
    assert main(["validate", "--dial", "fit", "--model", str(tmp_path)]) == 2
    assert "build it with `probsft backbone build --seed 0 --dial-steps 600" in capsys.readouterr().err
