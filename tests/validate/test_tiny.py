"""The character tokenizer and the tiny Llama: exact round trips, save/load, seeded init."""

import torch

from probsft.validate.tiny import build_char_tokenizer, tiny_llama


def test_char_tokenizer_round_trip_and_save(tmp_path):
    from transformers import AutoTokenizer

    tok = build_char_tokenizer("ab c\n\nab")                     # duplicates collapse
    assert len(tok) == 4 + 5 and tok.chat_template is None
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    text = "a b\nc  ba"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text       # one id per char, no BOS added
    assert tok("az")["input_ids"] == [4, tok.unk_token_id]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids and again.eos_token_id == 2


def test_tiny_llama_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a = tiny_llama(20, hidden_size=32, layers=2, heads=4, seed=0)
    assert torch.equal(torch.rand(3), expected)
    b = tiny_llama(20, hidden_size=32, layers=2, heads=4, seed=0)
    c = tiny_llama(20, hidden_size=32, layers=2, heads=4, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    assert a.lm_head.weight.shape == (20, 32) and a.config.num_hidden_layers == 2
