"""The noise check: its truth (which targets the noise changed) against the noise's own count, its
summary on rows with known answers, and a short run on the shipped backbone."""

import csv
import json

import pytest

from probsft.continuum import noise_check as nc
from probsft.validate.data import add_label_noise, tokenize_sft


def test_wrong_targets_are_the_changed_ones(tok, records):
    clean = tokenize_sft(records, tok, 64)
    noisy = add_label_noise(clean, 0.3, seed=1, unit="token")
    wrong = nc.wrong_targets(clean, noisy)
    assert len(wrong) == clean.n_response_tokens and int(wrong.sum()) == noisy.n_noisy > 0
    assert not nc.wrong_targets(clean, clean).any()
    # a whole answer swapped for another: every position that differs, and any extra token
    swapped = [dict(r) for r in records]
    swapped[0]["response"] = "j" * (len(records[0]["response"]) + 2)
    wrong = nc.wrong_targets(clean, tokenize_sft(swapped, tok, 64))
    first = len(records[0]["response"]) + 3              # its targets, eos included
    want = [a != "j" for a in records[0]["response"]] + [True, True, True]
    assert wrong[:first].tolist() == want and not wrong[first:].any()


def test_check_position_rows_on_a_tiny_model(tok, records):
    from tests.validate.conftest import make_model

    rows = nc.check_position(make_model(tok, spread=20.0), tok, "tiny", "toy", records,
                             rates=(0.3,), seeds=(0,))
    assert [(r["kind"], r["noise_rate"]) for r in rows] == [("clean", 0.0), ("token", 0.3),
                                                           ("answer", 0.3)]
    clean, token, answer = rows
    assert clean["true_token_rate"] == 0 and clean["true_record_rate"] == 0
    assert 0.15 < token["true_token_rate"] < 0.45 and answer["true_record_rate"] == pytest.approx(
        round(0.3 * len(records)) / len(records))
    assert clean["clean_answer_p"] == token["clean_answer_p"]
    assert clean["clean_answer_p"] == pytest.approx(clean["probe_answer_p"])
    for r in rows:
        assert set(r) == set(nc.FIELDS)
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"]
        assert r["covered"] == int(r["ci_low"] <= r["true_token_rate"] <= r["ci_high"])


def _row(band, kind, verdict, estimate, truth, informative=1, covered=1):
    return {"model": band[6], "band": band, "kind": kind, "verdict": verdict, "estimate": estimate,
            "true_token_rate": truth, "informative": informative, "covered": covered,
            "record_estimate": estimate, "true_record_rate": truth, "record_covered": covered,
            "verdict_right": int(kind == verdict)}


def test_summary_by_band():
    rows = [_row("model-strong", "token", "token", 0.21, 0.2),
            _row("model-strong", "answer", "cannot tell", 0.17, 0.2, covered=0),
            _row("model-strong", "clean", "token", 0.1, 0.0, covered=0),
            _row("model-weak", "token", "cannot tell", 0.9, 0.2, informative=0, covered=0)]
    s = nc.summarise(rows)
    strong = s["model-strong"]
    assert strong["rows"] == 3 and strong["informative"] == 3
    assert strong["coverage"] == pytest.approx(1 / 3) and strong["mae"] == pytest.approx(0.14 / 3)
    assert strong["bias"] == pytest.approx(0.08 / 3)
    assert strong["kind_right"] == pytest.approx(1 / 3)
    assert strong["kind_wrong"] == pytest.approx(1 / 3)
    weak = s["model-weak"]
    assert weak["rows"] == 1 and weak["informative"] == 0 and weak["coverage"] is None
    assert s["model-intermediate"]["rows"] == 0 and s["all"]["rows"] == 4
    by_model = nc.summarise(rows, "model")                # "model-strong" -> model "s"
    assert list(by_model) == ["s", "w", "all"] and by_model["s"] == strong
    text = nc.summary_text(s)
    assert text.splitlines()[1].startswith("model-weak") and "33%" in text


def test_run_on_the_shipped_backbone(tmp_path, capsys):
    summary = nc.run(out=tmp_path, positions=("t_sh1",), rates=(0.2,), seeds=(0,), n_records=64,
                     progress=False)
    rows = list(csv.DictReader(open(tmp_path / "estimates.csv")))
    assert len(rows) == 3 and list(rows[0]) == nc.FIELDS
    assert {r["model"] for r in rows} == {"backbone"}
    assert {r["band"] for r in rows} == {"model-strong"}
    # t_sh1 is a strong position of the backbone: clean reads clean, token noise reads token
    by = {r["kind"]: r for r in rows}
    assert by["clean"]["verdict"] == "clean" and by["token"]["verdict"] == "token"
    assert abs(float(by["token"]["estimate"]) - float(by["token"]["true_token_rate"])) < 0.05
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["bands"]["all"]["rows"] == 3 == summary["all"]["rows"]
    # an output folder that cannot be made is one clear error, before any work
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match="^error: "):
        nc.main(["--out", str(tmp_path / "file")])
