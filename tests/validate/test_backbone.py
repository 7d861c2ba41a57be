"""The shipped embedded backbone and its tasks: splits never overlap, generation is deterministic,
the checkpoint loads with from_pretrained and the probe places the three tasks in continuum order."""

import dataclasses

import pytest

from probsft.errors import ConfigError
from probsft.validate.backbone import SHIPPED, BackboneConfig, load
from probsft.validate.probe import probe
from probsft.validate.tasks import ALPHABET, TASKS, sample, split_of


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_never_overlap_and_are_deterministic(name):
    task = TASKS[name]
    sets = {}
    for split in ("pretrain", "train", "heldout"):
        recs = sample(task, split, 40, seed=1)
        assert recs == sample(task, split, 40, seed=1)
        assert len({r["response"] for r in recs}) == 40     # one item per key (the answer)
        assert all(set(r["prompt"] + r["response"]) <= set(ALPHABET) for r in recs)
        sets[split] = {r["response"] for r in recs}
    assert not sets["train"] & sets["heldout"]
    assert not sets["pretrain"] & (sets["train"] | sets["heldout"])


def test_split_of_is_a_function_of_the_key():
    assert {split_of("figlet", "ABC") for _ in range(3)} == {split_of("figlet", "ABC")}
    counts = {s: 0 for s in ("pretrain", "train", "heldout")}
    for i in range(2000):
        counts[split_of("t", str(i))] += 1
    assert 100 < counts["heldout"] < 300 and counts["pretrain"] > counts["train"]


def test_config_is_strict():
    with pytest.raises(ConfigError):
        BackboneConfig.from_dict({"steps": 10, "bogus": 1})
    with pytest.raises(ConfigError):
        BackboneConfig(mix=(("nope", 1.0),))
    cfg = BackboneConfig.from_dict(dataclasses.asdict(BackboneConfig(steps=7)))
    assert cfg.steps == 7


def test_shipped_backbone_places_tasks_in_continuum_order():
    model, tok = load(SHIPPED)
    assert type(model).__name__ == "LlamaForCausalLM"
    stats = {name: probe(model, tok, sample(TASKS[name], "train", 96, 0), batch_size=96,
                         placement="answer") for name in TASKS}
    region = {name: s["region"] for name, s in stats.items()}
    assert region == {"spell_backward": "model-strong", "letter_jumble": "model-intermediate",
                      "figlet": "model-weak"}, {k: s["answer_mean_p"] for k, s in stats.items()}
    # pretrained on the SFT format, the backbone knows where the answers of seen tasks end
    assert stats["spell_backward"]["eos_mean_p"] > 0.5


def test_documents_end_with_the_sft_eos_token():
    from probsft.validate.backbone import document
    from probsft.validate.data import encode_pair

    rec = sample(TASKS["letter_jumble"], "pretrain", 1, 0)[0]
    model, tok = load(SHIPPED)
    ids, _ = encode_pair(rec, tok)
    assert tok.encode(document(rec, BackboneConfig())) == ids          # the SFT tokens exactly
    assert tok.encode(document(rec, BackboneConfig(eos=False)))[-1] == tok.encode("\n")[0]
