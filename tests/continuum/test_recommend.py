"""probsft recommend: the measured-results reader, the rule and its hit rate on synthetic cells with
known answers, the first-order rates against a direct computation, and the command on a tiny model
and on the shipped backbone (with its errors)."""

import csv
import json
import math

import numpy as np
import pytest
import torch

import probsft
from probsft.cli import main
from probsft.paths import MODELS
from probsft.validate.data import collate, tokenize_sft
from probsft.continuum.analysis import PAIRED_FIELDS
from probsft.continuum.rule import RULE, choose_bandwidth, decide, dose_response, hit_rate
from probsft.continuum.cells import in_band_counts, read_paired, split_positions
from probsft.continuum.recommend import recommend

# (position, probe p) and Δ vs nll in points for -p and alpha(10), clean supervision, AdamW
POSITIONS = [("w1", 0.1), ("i1", 0.3), ("i2", 0.6), ("s1", 0.9)]
DELTAS = {"p": [-10.0, -1.0, 1.0, 8.0], "alpha(10)": [-20.0, -5.0, 0.0, 12.0]}


def _write_paired(path, half_width=1.5):
    rows = []
    for spec, ds in DELTAS.items():
        for (pos, x), d in zip(POSITIONS, ds):
            rows.append({"position": pos, "probe_answer_p": x, "supervision": "clean",
                         "optimizer": "adamw", "objective": spec, "n_seeds": 5, "delta": d,
                         "ci_low": d - half_width, "ci_high": d + half_width,
                         "tost_low": d - 1, "tost_high": d + 1, "mde": 3.0, "verdict": ""})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, PAIRED_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_reader_smooths_and_the_rule_keeps_nll_inside_the_tie_margin(tmp_path):
    cells = read_paired(_write_paired(tmp_path / "paired.csv"))
    # a narrow kernel at 0.75: the two positions 0.15 away share the weight (others ~e^-36)
    m = dose_response(cells, 0.75, "clean", "adamw", bandwidth=0.05)
    assert m["p"]["delta"] == pytest.approx(4.5) and m["alpha(10)"]["delta"] == pytest.approx(6.0)
    assert m["p"]["ci_low"] == pytest.approx(3.0) and m["p"]["ci_high"] == pytest.approx(6.0)
    assert m["p"]["nearest_position"] in ("i2", "s1") and m["nll"]["delta"] == 0.0
    # an infinite width is the plain mean over the positions, wherever the probe lies
    flat = dose_response(cells, 0.75, "clean", "adamw", bandwidth=math.inf)
    assert flat["p"]["delta"] == pytest.approx(np.mean(DELTAS["p"]))
    assert flat["alpha(10)"]["delta"] == pytest.approx(np.mean(DELTAS["alpha(10)"]))
    # far outside the measured range a narrow kernel still gives the nearest position (no 0/0)
    far = dose_response(cells, 40.0, "clean", "adamw", bandwidth=0.05)
    assert far["alpha(10)"]["delta"] == pytest.approx(12.0)
    assert dose_response(cells, 0.75, "token", "adamw") == {}          # no such supervision
    # the share of positions in the band of their best: i2 all three; s1 only alpha(10) (-p's
    # +8, CI to +9.5, misses +12; nll misses): 0.5 each for alpha(10), (1 + 0) / 2 for -p and nll
    assert m["alpha(10)"]["band"] == pytest.approx(1.0) and m["p"]["band"] == pytest.approx(0.5)
    assert m["nll"]["band"] == pytest.approx(0.5) and flat["nll"]["band"] == pytest.approx(0.75)
    for rule in ("band", "delta"):
        rec = decide(m, rule=rule)
        assert rec["objective"] == "alpha(10)" and rec["source"] == "measured"
        assert rec["expected_gain"] == pytest.approx(6.0) and rec["confidence"] == "low"  # 0.15
    at = lambda x, rule: decide(dose_response(cells, x, "clean", "adamw", bandwidth=0.05),
                                rule=rule)
    assert at(0.9, "band")["confidence"] == at(0.9, "delta")["confidence"] == "high"
    # at i2 every objective is in the band: the delta rule keeps nll (+1 < 2), the band rule
    # breaks the tie by the larger Δ (-p's +1)
    assert at(0.6, "delta")["objective"] == "nll" and at(0.6, "band")["objective"] == "p"
    # at w1 only nll is in the band (both rules); the plain mean: nll 3 of 4, the others 2 of 4
    assert at(0.1, "band")["objective"] == at(0.1, "delta")["objective"] == "nll"
    assert decide(flat)["objective"] == "nll"
    # a tie in the band share goes to the larger Δ, whatever the objectives' order
    entry = lambda band, d: {"band": band, "delta": d, "ci_low": d - 1, "ci_high": d + 1,
                             "distance": 0.0}
    tied = {"nll": entry(0.8, 0.0), "alpha(0.5)": entry(0.8, 3.0), "p": entry(0.6, 9.0)}
    assert decide(tied)["objective"] == "alpha(0.5)" and decide(tied, rule="delta")[
        "objective"] == "p"
    assert decide({}, {"nll": 1.0, "p": 2.0})["objective"] == "p"
    with pytest.raises(probsft.UserError, match="unknown rule"):
        decide(m, rule="vote")
    bad = tmp_path / "bad.csv"
    bad.write_text("position,delta\na,1\n")
    with pytest.raises(probsft.UserError, match="missing column"):
        read_paired(bad)


def _cells(xs, deltas, spec="p", half_width=0.5):
    return [{"position": f"x{x}", "probe_answer_p": x, "supervision": "clean",
             "optimizer": "adamw", "objective": spec, "n_seeds": 5, "delta": d,
             "ci_low": d - half_width, "ci_high": d + half_width, "mde": 3.0, "verdict": ""}
            for x, d in zip(xs, deltas)]


def test_bandwidth_by_leave_one_position_out():
    # a step: -p loses by 10 below p 0.5 and wins by 10 above. Left out, each position is decided
    # right from its neighbours by a narrow kernel (6/6); the plain mean of the other five is +2
    # (a tie: nll, right) below the step and -2 (nll, wrong) above it (3/6)
    step = _cells([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [-10, -10, -10, 10, 10, 10])
    out = choose_bandwidth(step, rule="delta")
    assert out["lopo"][0.05] == [6, 6] and out["lopo"][math.inf] == [3, 6]
    assert out["bandwidth"] == 0.05                     # ties go to the narrowest width
    # the band rule: left out, a position sees the other side's three positions win and its own
    # side's two: the plain mean picks the wrong side everywhere (0/6)
    band = choose_bandwidth(step, rule="band")
    assert band["lopo"][0.05] == [6, 6] and band["lopo"][math.inf] == [0, 6]
    assert choose_bandwidth(step) == band               # the default rule
    # a flat +5 everywhere: every width hits everything; the narrowest wins the tie
    flat = choose_bandwidth(_cells([0.1, 0.4, 0.8], [5, 5, 5]))
    assert all(v == [3, 3] for v in flat["lopo"].values()) and flat["bandwidth"] == 0.05
    # one outlier (+20 among -10s): left out, no position can predict it, and a narrow kernel
    # carries it to its neighbours (1/4); wide kernels average it away (3/4). A position that
    # also saw itself would hit everywhere (4/4)
    spike = _cells([0.1, 0.2, 0.3, 0.4], [-10, -10, 20, -10])
    outlier = choose_bandwidth(spike, rule="delta")
    assert outlier["lopo"][0.05] == [1, 4] and outlier["lopo"][math.inf] == [3, 4]
    assert outlier["bandwidth"] == 0.5
    # the band rule alike, but at 0.2 its narrow kernel sees 0.1 (nll) a rounding nearer than 0.3
    outlier = choose_bandwidth(spike, rule="band")
    assert outlier["lopo"][0.05] == [2, 4] and outlier["lopo"][math.inf] == [3, 4]
    assert outlier["bandwidth"] == 0.2
    assert choose_bandwidth(step, ["x0.1", "x0.9"]) == {"bandwidth": math.inf, "lopo": {}}
    # lopo_cells is that leave-one-position-out, cell by cell; nested (None), each position's
    # width is chosen on the other five: a narrow one on the step, so every cell is hit again
    from probsft.continuum.rule import lopo_cells

    for h in (0.05, math.inf):
        rows = lopo_cells(step, h, rule="delta")
        assert [sum(r["hit"] for r in rows), len(rows)] == out["lopo"][h]
        assert all(r["held_out"] for r in rows)
    nested = lopo_cells(step, None, rule="delta")
    assert sum(r["hit"] for r in nested) == 6
    assert sum(r["hit"] for r in lopo_cells(step, None, rule="band")) == 6
    # dose_response chooses the width itself when none is given
    assert dose_response(step, 0.75, "clean", "adamw")["p"]["delta"] == pytest.approx(10, abs=0.1)


def test_in_band_counts_how_often_a_fixed_choice_was_right(tmp_path):
    cells = read_paired(_write_paired(tmp_path / "paired.csv"))
    # w1: nll best; i1: nll best, -p -1 in the band; i2: all three in the band of -p's +1;
    # s1: alpha(10) +12, -p +8 (CI to +9.5) out of it
    assert in_band_counts(cells, "clean", "adamw") == {"nll": [3, 4], "alpha(10)": [2, 4],
                                                       "p": [2, 4]}
    assert in_band_counts(cells, "token", "adamw") == {}


def test_hit_rate_held_out_positions_on_known_cells(tmp_path):
    cells = read_paired(_write_paired(tmp_path / "paired.csv", half_width=0.5))
    rule, held = split_positions(cells)
    assert rule == ["w1", "i2"] and held == ["i1", "s1"]
    out = hit_rate(cells, rule)
    assert out["bandwidth"] == math.inf                 # two rule positions: no leave-one-out
    by = {c["position"]: c for c in out["cells"]}
    # rule positions: nll everywhere (mean Δ of the rule positions <= +1) and within the band of
    # the best
    assert by["w1"]["recommended"] == by["i2"]["recommended"] == "nll"
    assert out["rule"] == {"hits": 2, "scored": 2, "rate": 1.0}
    # held out: at 0.3 the rule says nll (a hit); at 0.9 it says nll too, but alpha(10) measured
    # +12 there: a miss
    assert by["i1"]["hit"] and by["s1"]["best"] == "alpha(10)" and not by["s1"]["hit"]
    assert out["held_out"] == {"hits": 1, "scored": 2, "rate": 0.5}
    # informative: only s1 (best +12 > 2); at i1 answering nll is already within the band
    assert out["held_out_informative"] == {"hits": 0, "scored": 1, "rate": 0.0}
    # deciding on every position (a narrow kernel by leave-one-out) makes s1 a hit
    every = hit_rate(cells, rule + held)
    assert every["bandwidth"] < 0.5 and every["rule"]["rate"] == 1.0
    # another grid (a second backbone): every cell is held out; at 0.95 the rule set on all four
    # positions says alpha(10), measured +3 there against -p's +4 (in the band)
    other = _cells([0.05, 0.95], [-3, 4]) + _cells([0.05, 0.95], [-8, 3], spec="alpha(10)")
    test = hit_rate(cells, rule + held, test_cells=other)
    assert test["rule"]["scored"] == 0 and test["held_out"] == {"hits": 2, "scored": 2, "rate": 1.0}
    assert [c["recommended"] for c in test["cells"]] == ["nll", "alpha(10)"]


def test_hit_rate_script(tmp_path, capsys):
    from probsft.continuum.rule import main as hit_rate_main

    hit_rate_main([str(_write_paired(tmp_path / "paired.csv", half_width=0.5))])
    text = capsys.readouterr().out
    assert '"rate": 0.5' in text and "MISS" in text and text.count("held-out") == 2


def test_pooled_grids_tag_positions_and_the_script_scores_by_noise_kind(tmp_path, capsys):
    from probsft.continuum.rule import RULES, main as hit_rate_main
    from probsft.continuum.cells import read_grids

    a = _write_paired((tmp_path / "grid_a").mkdir() or tmp_path / "grid_a" / "paired.csv")
    b = _write_paired((tmp_path / "grid_b").mkdir() or tmp_path / "grid_b" / "paired.csv")
    assert [c["position"] for c in read_grids(a)] == [c["position"] for c in read_paired(a)]
    pooled = read_grids([a, b])
    assert len(pooled) == 16 and {c["position"] for c in pooled} >= {"grid_a:w1", "grid_b:s1"}
    # the same task on two grids is two positions: in-band counts double
    assert in_band_counts(pooled, "clean", "adamw")["nll"] == [6, 8]
    with pytest.raises(probsft.UserError, match="same name"):
        read_grids([a, a])
    with pytest.raises(probsft.UserError, match="no paired.csv"):
        read_grids([])
    # a test grid with token-noise cells too: scored by supervision
    other = tmp_path / "grid_c" / "paired.csv"
    other.parent.mkdir()
    rows = list(csv.DictReader(open(a)))
    rows += [{**r, "supervision": "token"} for r in rows]
    with open(other, "w", newline="") as fh:
        w = csv.DictWriter(fh, PAIRED_FIELDS)
        w.writeheader()
        w.writerows(rows)
    for rule in RULES:
        hit_rate_main([str(a), str(other), "--also", str(b), "--rule", rule])
        out = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")
        assert out["rule"] == rule and len(out["rule_positions"]) == 8
        # token cells: no token-noise results in the rule grids, so nothing is measured there
        # and the recommendation (from no cells) is not scored
        assert set(out["held_out_by_supervision"]) == {"clean"}
        assert out["held_out"]["scored"] == 4
    with pytest.raises(SystemExit, match="give TEST or --lopo"):
        hit_rate_main([str(a), "--also", str(b)])
    with pytest.raises(SystemExit, match="give no TEST"):
        hit_rate_main([str(a), str(other), "--lopo"])
    # --lopo: each of the 8 pooled positions decided from the other 7, its width chosen on them
    hit_rate_main([str(a), "--also", str(b), "--lopo", "--rule", "delta"])
    out = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")
    from probsft.continuum.rule import lopo_cells

    rows = lopo_cells(read_grids([a, b]), None, rule="delta")
    assert out["held_out"]["hits"] == sum(r["hit"] for r in rows) and len(rows) == 8
    assert out["held_out"]["scored"] == 8 and out["held_out_by_supervision"]["clean"]["scored"] == 8
    with pytest.raises(SystemExit):
        hit_rate_main([str(a), "--rule", "vote"])
    # the command's --rule choices are the rules
    import argparse

    from probsft.commands.recommend import add_parser

    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    rule_arg = next(a for a in sub.choices["recommend"]._actions if a.dest == "rule")
    assert sorted(rule_arg.choices) == sorted(RULES) and rule_arg.default == RULE
    # and its --curve help names the shipped curve
    curve_arg = next(a for a in sub.choices["recommend"]._actions if a.dest == "curve")
    assert "data/curves/measured.json" in curve_arg.help


def _direct_nll_rates(model, tok, records):
    ex = tokenize_sft(records, tok, 64)
    b = collate(ex, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    y = b["labels"][:, 1:]
    q = torch.softmax(logits[:, :-1][y != -100].double(), -1)
    ys = y[y != -100]
    qy = q.gather(-1, ys[:, None])[:, 0]
    return float((qy * (1 - 2 * qy + (q * q).sum(-1))).mean())      # Cor. E.6 with s = 1


def test_recommend_on_a_tiny_model_folder(tmp_path, saved_model, jsonl, records):
    from probsft.validate.train import load_model_and_tokenizer

    paired = _write_paired(tmp_path / "paired.csv")
    out = recommend(saved_model, jsonl, sample_tokens=10_000, curve=paired, progress=False)
    assert out["probe"]["tokens"] == sum(len(r["response"]) + 1 for r in records)
    assert out["ranking"][0] in ("p", "alpha(10)", "nll") and len(out["candidates"]) == 12
    assert out["recommendation"]["source"] == "measured" and out["why"]
    assert out["in_band"] == in_band_counts(read_paired(paired), "clean", "adamw")
    assert out["by_supervision"] == {"clean": out["recommendation"]["resolved"]}   # one kind measured
    assert any(line.startswith("by noise kind") for line in out["why"])
    assert any(line.startswith("probe-blind check: over the 4 measured positions of clean/adamw, "
                               "nll was within the 2-point band of the best in 3")
               for line in out["why"])
    rates = {c["spec"]: c for c in out["candidates"]}
    model, tok = load_model_and_tokenizer(str(saved_model))
    assert rates["nll"]["rate_clean"] == pytest.approx(_direct_nll_rates(model, tok, records),
                                                       rel=1e-5)
    # DEFT's rate lies between NLL's and -p's (its alpha = sum q^2 lies in [1/V, 1])
    assert rates["p"]["rate_clean"] <= rates["deft"]["rate_clean"] <= rates["nll"]["rate_clean"]
    theory = recommend(saved_model, jsonl, sample_tokens=5, curve=False, progress=False,
                       noise=0.3)
    assert theory["recommendation"]["source"] == "theory" and theory["probe"]["tokens"] >= 5
    assert theory["probe"]["examples"] < len(records)
    best = max(theory["candidates"], key=lambda c: c["rate_at_noise"])
    assert theory["recommendation"]["resolved"] == best["resolved"]
    with pytest.raises(probsft.UserError, match="noise"):
        recommend(saved_model, jsonl, noise=1.0, progress=False)


def test_recommend_measured_alpha_auto_is_named_and_resolved(tmp_path, saved_model, jsonl):
    """The grid stores alpha(auto) under its spec; when it is the measured best the recommendation
    names it and gives the α it resolves to on this data, and the explanation is written."""
    rows = []
    for (pos, x), d in zip(POSITIONS, [3.0, 6.0, 9.0, 12.0]):
        for spec, delta in (("p", d - 5), ("alpha(auto)", d)):
            rows.append({"position": pos, "probe_answer_p": x, "supervision": "clean",
                         "optimizer": "adamw", "objective": spec, "n_seeds": 5, "delta": delta,
                         "ci_low": delta - 1, "ci_high": delta + 1, "tost_low": delta - 0.5,
                         "tost_high": delta + 0.5, "mde": 2.0, "verdict": ""})
    with open(tmp_path / "paired.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, PAIRED_FIELDS)
        w.writeheader()
        w.writerows(rows)
    out = recommend(saved_model, jsonl, sample_tokens=2000, curve=tmp_path / "paired.csv",
                    progress=False)
    rec = out["recommendation"]
    assert rec["objective"] == "alpha(auto)" and rec["resolved"] == out["alpha_auto"]
    assert rec["resolved"].startswith("alpha(") and rec["resolved"] != "alpha(auto)"
    auto = next(c for c in out["candidates"] if c["spec"] == "alpha(auto)")
    assert auto["measured"]["delta"] > 2 and out["ranking"][0] == "alpha(auto)"
    assert any("alpha(auto)" in line or rec["resolved"] in line for line in out["why"])


def test_cli_recommend_backbone_and_errors(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{w}>", "response": w[::-1]}) + "\n"
                            for w in ["abc", "hello", "world", "jumble"]))
    out = tmp_path / "rec.json"
    assert main(["recommend", "--model", str(MODELS / "backbone"), "--data", str(data),
                 "--theory-only", "--json", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "recommended:" in text and "region:" in text
    saved = json.loads(out.read_text())
    assert saved["recommendation"]["objective"] in saved["ranking"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["recommend", "--model", str(MODELS / "backbone"), "--data", str(empty)]) == 2
    assert main(["recommend", "--model", str(tmp_path / "nope"), "--data", str(data)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n')
    assert main(["recommend", "--model", str(MODELS / "backbone"), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err


def test_recommend_default_threads_follow_the_idle_cpus(monkeypatch):
    import os

    import torch

    from probsft.commands.recommend import idle_threads

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (10.0 * cpus, 0.0, 0.0))
    assert idle_threads() == 1                            # a busy machine: one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert idle_threads() == max(1, min(torch.get_num_threads(), cpus))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus - 1.2, 0.0, 0.0))
    assert idle_threads() == 1

    def unavailable():
        raise OSError

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert idle_threads() == cpus


def test_text_plot_marks_the_probe_and_the_zero_line():
    from probsft.continuum.recommend import CURVE_P
    from probsft.continuum.recommend_text import text_plot

    samples = {"p": list(CURVE_P), "probe_p": 0.52, "supervision": "token", "optimizer": "adamw",
               "delta": {"p": [10.0 * (p - 0.5) for p in CURVE_P], "alpha(0.1)": [2.0] * len(CURVE_P)}}
    lines = text_plot(samples, ["p", "alpha(0.1)", "missing"])
    grid = lines[1:12]
    col = 7 + min(range(len(CURVE_P)), key=lambda i: abs(CURVE_P[i] - 0.52))
    assert all(row[col] in "|AB-" for row in grid)                      # the probe's column
    zero = next(row for row in grid if row.startswith("  +0.0"))
    assert set(zero[7:]) <= {"-", "A", "B"}
    assert grid[0].startswith("  +4.5") and grid[-1].startswith("  -4.5")  # p's ends, 0.05/0.95
    assert lines[-1].strip() == "A = p  B = alpha(0.1)"


def test_cli_recommend_plot_saves_the_json_then_draws_it(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{w}>", "response": w[::-1]}) + "\n"
                            for w in ["abc", "hello", "world", "jumble"]))
    paired = _write_paired(tmp_path / "paired.csv")
    stem = tmp_path / "rec"
    assert main(["recommend", "--model", str(MODELS / "backbone"), "--data", str(data), "--curve",
                 str(paired), "--plot", str(stem), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Δ vs nll (points), clean/adamw" in text and "measured Δ [CI]" in text
    saved = json.loads((tmp_path / "rec.json").read_text())
    assert saved["measured_curve"]["probe_p"] == saved["probe"]["placement_mean_p"]
    assert (tmp_path / "rec.png").stat().st_size > 0 and (tmp_path / "rec.svg").exists()
    from probsft.errors import UserError
    from probsft.figures.recommend import draw

    (tmp_path / "theory.json").write_text(json.dumps({**saved, "measured_curve": None}))
    with pytest.raises(UserError, match="no measured curve"):
        draw(tmp_path / "theory.json", tmp_path / "t")


def test_recommend_json_carries_the_noise_estimate(tmp_path, saved_model, jsonl, records, capsys):
    """The probe's noise estimate travels in recommend's output and --json, beside the answer for
    each measured noise kind; the text marks the kind it points to; bad data is still one error."""
    from probsft.continuum.recommend_text import noise_lines
    from probsft.validate.noise import KINDS

    paired = _write_paired(tmp_path / "paired.csv")
    out = tmp_path / "rec.json"
    assert main(["recommend", "--model", str(saved_model), "--data", str(jsonl), "--curve",
                 str(paired), "--json", str(out), "--no-progress"]) == 0
    saved = json.loads(out.read_text())
    est = saved["noise_estimate"]
    assert est["kind"] in KINDS and est["tokens"] == sum(len(r["response"]) for r in records)
    assert est["points_to"] == (est["kind"] if est["kind"] in saved["by_supervision"] else None)
    assert est["interval"][0] <= est["token_rate"] <= est["interval"][1]
    assert saved["by_supervision"] == {"clean": saved["recommendation"]["resolved"]}
    assert any(line.startswith("label noise (probe estimate): ") for line in saved["why"])
    # the text, on an estimate that points to token noise
    told = {**est, "informative": True, "token_rate": 0.2, "interval": [0.18, 0.22],
            "record_share": 0.7, "record_interval": [0.6, 0.8], "kind": "token",
            "points_to": "token", "reason": "3% of the wrong targets come as whole wrong answers"}
    lines = noise_lines({"noise_estimate": told, "optimizer": "adamw",
                         "by_supervision": {"clean": "alpha(0.1)", "token": "deft"}})
    assert lines[0].startswith("label noise (probe estimate): 20.0% of answer targets wrong "
                               "(95% CI 18.0% .. 22.0%), 70% of records (CI 60% .. 80%); "
                               "points to token (3% of")
    assert lines[1] == ("by noise kind (as the curve measured it): clean -> alpha(0.1), "
                        "token -> deft <- the estimate (adamw)")
    blind = noise_lines({"noise_estimate": {**told, "informative": False, "kind": "cannot tell",
                                            "points_to": None, "reason": "uninformative: x"},
                         "optimizer": "adamw", "by_supervision": {"clean": "nll"}})
    assert blind == ["label noise (probe estimate): cannot say; uninformative: x",
                     "by noise kind (as the curve measured it): clean -> nll (adamw)"]
    capsys.readouterr()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["recommend", "--model", str(saved_model), "--data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
