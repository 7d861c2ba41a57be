"""SFT data: prompt masking (raw and chat template), truncation counts, line-exact errors, noise."""


import pytest

from probsft.errors import ConfigError, UserError
from probsft.validate.data import add_label_noise, collate, read_jsonl, tokenize_sft

TEMPLATE = ("{% for m in messages %}{{ m['role'][0] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}a>{% endif %}")


def test_prompt_is_masked_and_eos_appended(tok):
    ex = tokenize_sft([{"prompt": "abc>", "response": "cba"}], tok, 64)[0]
    assert tok.decode(ex["input_ids"]) == "abc>cba" + tok.eos_token
    assert ex["labels"] == [-100] * 4 + ex["input_ids"][4:]


def test_chat_template_masks_the_generation_prompt(tok):
    from probsft.validate.tiny import build_char_tokenizer

    t = build_char_tokenizer("abcdefghijklmnopqrstuvwxyz>\n")
    t.chat_template = TEMPLATE
    rec = {"messages": [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "ba"}]}
    ex = tokenize_sft([rec], t, 64)[0]
    assert t.decode(ex["input_ids"]) == "u>ab\na>ba\n"
    n_prompt = len("u>ab\na>")
    assert ex["labels"][:n_prompt] == [-100] * n_prompt
    assert t.decode(ex["labels"][n_prompt:]) == "ba\n"
    # a prompt/response record goes through the same template
    same = tokenize_sft([{"prompt": "ab", "response": "ba"}], t, 64)[0]
    assert same == ex


def test_truncation_is_counted_not_dropped(tok):
    recs = [{"prompt": "abcdef>", "response": "fedcba"}, {"prompt": "ab>", "response": "ba"},
            {"prompt": "abcdefghij", "response": "x"}]
    out = tokenize_sft(recs, tok, 8)
    assert len(out) == 3 and out.n_truncated == 2 and out.n_no_response == 1
    assert all(len(e["input_ids"]) <= 8 for e in out)
    assert out.n_response_tokens == 1 + 3                      # "f" of the first, "ba</s>" of 2nd
    batch = collate(out, tok.pad_token_id)
    assert batch["input_ids"].shape == (3, 8) and int(batch["attention_mask"][1].sum()) == 6


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not valid JSON"), ('["a"]', "JSON object"), ('{"prompt": "a"}', "'response'"),
    ('{"messages": [{"role": "user", "content": "a"}]}', "assistant"),
    ('{"messages": []}', "non-empty")])
def test_malformed_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n' + line + "\n")
    with pytest.raises(UserError, match=f"d.jsonl:3: .*{problem}"):
        read_jsonl(path)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no records"):
        read_jsonl(tmp_path / "e.jsonl")


def test_token_noise_rate_seed_and_corruption(tok, records):
    clean = tokenize_sft(records * 20, tok, 64)
    noisy = add_label_noise(clean, 0.3, seed=1)
    again = add_label_noise(clean, 0.3, seed=1)
    assert noisy == again and noisy != add_label_noise(clean, 0.3, seed=2)
    changed = total = 0
    for c, n in zip(clean, noisy):
        for i, (a, b) in enumerate(zip(c["labels"], n["labels"])):
            assert (a == -100) == (b == -100) and n["input_ids"][i] == (b if b != -100 else c["input_ids"][i])
            total += a != -100
            changed += a != b
    assert changed == noisy.n_noisy and abs(changed / total - 0.3) < 0.05
    assert add_label_noise(clean, 0.0) == clean


def test_answer_noise_changes_exactly_the_fraction(records):
    noisy = add_label_noise(records, 0.25, seed=0, unit="answer")
    changed = [a["response"] != b["response"] for a, b in zip(records, noisy)]
    assert sum(changed) == 4 and all(a["prompt"] == b["prompt"] for a, b in zip(records, noisy))
    with pytest.raises(ConfigError):
        add_label_noise(records, 1.5)
    with pytest.raises(ConfigError):
        add_label_noise(records, 0.1, unit="word")


def test_invalid_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff", "response": "b"}\n')
    with pytest.raises(UserError, match=rf"{path}:2: not valid UTF-8 \(byte 0xff at column 13\)"):
        read_jsonl(path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n')
    assert read_jsonl(path) == [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]


def test_unknown_characters_are_warned_about_with_a_count(tok):
    recs = [{"prompt": "ab>", "response": "ba"}, {"prompt": "aX>", "response": "Yé"},
            {"prompt": "Z>", "response": "a"}]
    with pytest.warns(UserWarning, match=r"4 token\(s\) in 2 example\(s\) .*<unk>"):
        out = tokenize_sft(recs, tok, 64)
    assert out.n_unknown == 4
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # known characters: no warning
        assert tokenize_sft(recs[:1], tok, 64).n_unknown == 0
