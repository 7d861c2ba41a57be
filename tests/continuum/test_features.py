"""Grid position features (probsft.continuum.features): each equals a direct computation."""

import json

import pytest
import torch

import probsft
from probsft.validate.data import add_label_noise, collate, tokenize_sft
from probsft.continuum.features import FEATURES, grid_features, position_features
from tests.validate.conftest import make_model


def _answer_p_and_q(model, tok, records):
    b = collate(tokenize_sft(records, tok, 256), tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    y = b["labels"][:, 1:]
    keep = (y != -100) & (y != tok.eos_token_id)
    q = torch.softmax(logits[:, :-1][keep].double(), -1)
    return q.gather(-1, y[keep][:, None]).squeeze(-1), q, y[keep]


def test_position_features_match_a_direct_computation(tok, records):
    model = make_model(tok, spread=20.0)
    f = position_features(model, tok, records, records[:4], max_new_tokens=4)
    assert set(f) == set(FEATURES)
    p, q, y = _answer_p_and_q(model, tok, records)
    s = (q * q).sum(-1)
    assert f["answer_p"] == pytest.approx(float(p.mean()), rel=1e-5)
    assert f["mean_sumsq"] == pytest.approx(float(s.mean()), rel=1e-5)
    assert f["deft_weight"] == pytest.approx(float((p ** s * (1 - p)).mean() / (1 - p).mean()),
                                             rel=1e-4)
    assert f["negp_weight"] == pytest.approx(float((p * (1 - p)).mean() / (1 - p).mean()), rel=1e-4)
    top1 = q.argmax(-1) == y
    assert f["top1_accuracy"] == pytest.approx(float(top1.double().mean()))
    wrong = ~top1 & (q.max(-1).values > 0.5)
    assert f["frac_confident_wrong"] == pytest.approx(float(wrong.double().mean()))
    noisy_p, _, _ = _answer_p_and_q(model, tok, add_label_noise(records, 1.0, 0, "answer"))
    assert f["noise_label_p"] == pytest.approx(float(noisy_p.mean()), rel=1e-5)
    assert f["noise_label_p"] != pytest.approx(f["answer_p"], rel=1e-3)
    assert 0 <= f["base_exact_match"] <= 1


def test_grid_features_checks_the_grid_and_its_model(tmp_path, saved_model):
    with pytest.raises(probsft.UserError, match="no saved grid"):
        grid_features(tmp_path / "nowhere", saved_model, progress=False)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(json.dumps({"model_sha256": "0" * 64}))
    with pytest.raises(probsft.UserError, match="not the model"):
        grid_features(tmp_path / "g", saved_model, progress=False)


def test_correlations_of_saved_features_with_an_objectives_gain(tmp_path, capsys):
    import csv

    from probsft.continuum.features import correlations, main
    from probsft.continuum.analysis import PAIRED_FIELDS

    def grid(name, xs, gains):
        folder = tmp_path / name
        folder.mkdir()
        feats = {}
        with (folder / "paired.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=PAIRED_FIELDS)
            w.writeheader()
            for i, (x, d) in enumerate(zip(xs, gains)):
                t = f"t{i}"
                feats[t] = {f: (x if f == "noise_label_p" else 0.5) for f in FEATURES}
                w.writerow({"position": t, "probe_answer_p": 0.5, "supervision": "token",
                            "optimizer": "sgd", "objective": "deft", "n_seeds": 5, "delta": d,
                            "ci_low": d - 1, "ci_high": d + 1, "tost_low": 0, "tost_high": 0,
                            "mde": 1, "verdict": ""})
        (folder / "features.json").write_text(json.dumps(feats))
        return folder

    # the gain falls as noise_label_p rises, on two grids pooled (positions t0.. in both)
    a = grid("a", [0.01, 0.02, 0.03], [9.0, 5.0, 1.0])
    b = grid("b", [0.015, 0.04], [7.0, -3.0])
    row = correlations([a, b], "deft")[("token", "sgd")]
    assert row["n"] == 5 and row["noise_label_p"] == pytest.approx(-1.0)
    assert row["answer_p"] is None                       # a constant feature: undefined
    b2 = grid("c", [0.04, 0.015], [7.0, -3.0])           # reversed on one grid: rank d² 22, ρ -0.1
    assert correlations([a, b2], "deft")[("token", "sgd")]["noise_label_p"] == pytest.approx(-0.1)
    # averaged per position first: a second (kind, optimizer) at grid a shifts its means
    extra = [{"position": "t0", "probe_answer_p": 0.5, "supervision": "clean", "optimizer": "sgd",
              "objective": "deft", "n_seeds": 5, "delta": -20.0, "ci_low": -21, "ci_high": -19,
              "tost_low": 0, "tost_high": 0, "mde": 1, "verdict": ""}]
    with (a / "paired.csv").open("a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=PAIRED_FIELDS).writerows(extra)
    mean = correlations([a, b], "deft", average=True)
    assert list(mean) == [("mean", "mean")] and mean[("mean", "mean")]["n"] == 5
    # a:t0's mean is (9 - 20) / 2: ranks of x 1, 3, 4, 2, 5 against Δ 1, 4, 3, 5, 2, Σd² 20, ρ 0
    assert mean[("mean", "mean")]["noise_label_p"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(probsft.UserError, match="not measured"):
        correlations([a], "alpha(2)")
    (tmp_path / "d").mkdir()
    with pytest.raises(probsft.UserError, match="no features.json"):
        correlations([tmp_path / "d"], "deft")
    main([str(a), str(b), "--correlate", "deft"])
    line = capsys.readouterr().out.splitlines()[-1].split()
    assert line[:3] == ["token", "sgd", "5"] and "-1.00" in line
    main([str(a), str(b), "--correlate", "deft", "--average"])
    line = capsys.readouterr().out.splitlines()[-1].split()
    assert line[:3] == ["mean", "mean", "5"] and "+0.00" in line
    with pytest.raises(SystemExit, match="needs one grid folder and --model"):
        main([str(a), str(b)])
