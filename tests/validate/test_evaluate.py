"""Evaluation: Jaro-Winkler against published values, extractors, greedy decoding, avg@k."""

import pytest
import torch

from probsft.errors import ConfigError
from probsft.validate.evaluate import (
    EXTRACTORS,
    evaluate,
    exact_match,
    generate,
    get_extractor,
    jaro,
    jaro_winkler,
)
from tests.validate.conftest import make_model


@pytest.mark.parametrize("a, b, j, jw", [
    # Winkler (1990) / Wikipedia reference values
    ("MARTHA", "MARHTA", 0.944444, 0.961111), ("DWAYNE", "DUANE", 0.822222, 0.840000),
    ("DIXON", "DICKSONX", 0.766667, 0.813333), ("CRATE", "TRACE", 0.733333, 0.733333),
    ("abc", "abc", 1.0, 1.0), ("abc", "xyz", 0.0, 0.0), ("", "abc", 0.0, 0.0)])
def test_jaro_winkler_known_values(a, b, j, jw):
    assert jaro(a.lower(), b.lower()) == pytest.approx(j, abs=1e-6)
    assert jaro_winkler(a, b) == pytest.approx(jw, abs=1e-6)
    assert jaro_winkler(f"  {a.upper()} ", b.lower()) == pytest.approx(jw, abs=1e-6)  # case, strip


def test_exact_match_and_extractors():
    assert exact_match(" Hello ", "hello") == 1.0 and exact_match("hell", "hello") == 0.0
    assert EXTRACTORS["boxed"]("so \\boxed{1} then \\boxed{\\frac{1}{2}} end") == "\\frac{1}{2}"
    assert EXTRACTORS["last_number"]("12 apples, 1,234.5 pears") == "1234.5"
    assert EXTRACTORS["letter"]("answer: \\boxed{C}") == "C"
    assert EXTRACTORS["raw"]("  CAT\nmore") == "CAT" and EXTRACTORS["raw"]("") == ""
    with pytest.raises(ConfigError):
        get_extractor("nope")


def test_greedy_generation_is_argmax_decoding(tok, records):
    model = make_model(tok, spread=10.0)
    out = generate(model, tok, records[:3], max_new_tokens=4, batch_size=2)
    for rec, (text,) in zip(records[:3], out):
        ids = tok(rec["prompt"])["input_ids"]
        new = []
        with torch.no_grad():
            for _ in range(4):
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                new.append(nxt)
        assert text == tok.decode(new, skip_special_tokens=True)


def test_avg_at_k_is_the_mean_over_all_samples(tok, records):
    model = make_model(tok, spread=10.0)
    summary, rows = evaluate(model, tok, records[:4], samples=3, temperature=1.0, max_new_tokens=3)
    assert len(rows) == 12 and summary["eval/samples"] == 3
    assert summary["eval/jaro_winkler"] == pytest.approx(sum(r["jaro_winkler"] for r in rows) / 12)
    again, _ = evaluate(model, tok, records[:4], samples=3, temperature=1.0, max_new_tokens=3)
    assert again == summary                                       # seeded


@pytest.mark.parametrize("kw, word", [(dict(samples=3, temperature=0.0), "temperature > 0"),
                                      (dict(temperature=-1.0), "temperature"),
                                      (dict(temperature=float("nan")), "temperature"),
                                      (dict(top_p=2.0), "top_p"), (dict(samples=0), "samples")])
def test_bad_sampling_settings_are_config_errors(tok, records, kw, word):
    from probsft.errors import ConfigError

    with pytest.raises(ConfigError, match=word):
        evaluate(make_model(tok), tok, records[:2], max_new_tokens=2, **kw)


def test_cli_samples_without_temperature_samples_at_one(tmp_path, saved_model, jsonl, capsys):
    import json

    from probsft.cli import main

    assert main(["evaluate", "--model", str(saved_model), "--data", str(jsonl), "--samples", "3",
                 "--max-new-tokens", "2", "--out", str(tmp_path / "e")]) == 0
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["eval/samples"] == 3 and res["eval/temperature"] == 1.0
