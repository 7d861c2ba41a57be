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
        assert len({r["prompt"] for r in recs}) == 40
        assert all(set(r["prompt"] + r["response"]) <= set(ALPHABET) for r in recs)
        sets[split] = {r["response"] for r in recs} if name != "chain_sum" else \
            {r["prompt"] for r in recs}
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
    mean_p = {name: probe(model, tok, sample(TASKS[name], "train", 48, 0), batch_size=48)["mean_p"]
              for name in TASKS}
    assert mean_p["spell_backward"] > mean_p["chain_sum"] > mean_p["figlet"]
    assert mean_p["spell_backward"] >= 0.65 and mean_p["figlet"] <= 0.15
