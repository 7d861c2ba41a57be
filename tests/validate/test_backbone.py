"""The shipped embedded backbone and its tasks: splits never overlap, generation is deterministic,
the checkpoint loads with from_pretrained and the probe places the three tasks in continuum order."""

import dataclasses

import pytest

from probsft.errors import ConfigError
from probsft.validate.backbone import SHIPPED, BackboneConfig, load
from probsft.validate.probe import probe
from probsft.validate.tasks import ALPHABET, DIAL, TASKS, TRANSFORMS, sample, split_of


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_never_overlap_and_are_deterministic(name):
    task = TASKS[name]
    sets = {}
    for split in ("pretrain", "train", "heldout"):
        recs = sample(task, split, 40, seed=1)
        assert recs == sample(task, split, 40, seed=1)
        key = "prompt" if name in DIAL else "response"       # the key: dial input / answer word
        assert len({r[key] for r in recs}) == 40              # one item per key
        assert all(set(r["prompt"] + r["response"]) <= set(ALPHABET) for r in recs)
        sets[split] = {r[key] for r in recs}
    assert not sets["train"] & sets["heldout"]
    assert not sets["pretrain"] & (sets["train"] | sets["heldout"])


def test_dial_transformations():
    f = {name: fn for name, (_, fn) in TRANSFORMS.items()}
    assert f["rev"]("abcde") == "edcba" and f["swp"]("abcde") == "badce"
    assert f["rol"]("abcde") == "bcdea" and f["ror"]("abcde") == "eabcd"
    assert f["sh1"]("xyz") == "yza" and f["sh3"]("abz") == "dec" and f["sh5"]("a") == "f"
    assert f["nov"]("banana") == "bnn" and f["srt"]("dcab") == "abcd"
    rec = sample(TASKS["t_swp"], "train", 1, 0)[0]
    w = rec["prompt"].split()[1]
    assert rec["prompt"] == f"swp {w}\n" and rec["response"] == f["swp"](w)


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
    with pytest.raises(ConfigError):
        BackboneConfig(dial_mix=(("t_rev", 0.0),))
    cfg = BackboneConfig.from_dict(dataclasses.asdict(BackboneConfig(steps=7)))
    assert cfg.steps == 7


@pytest.fixture(scope="module")
def shipped():
    return load(SHIPPED)


def test_shipped_backbone_is_a_dial(shipped):
    """The experiment's positions spread over the continuum (>= 8, two or more per region, from
    below 0.05 to above 0.8 in mean answer p), on a small sample of SFT-train items per position."""
    from probsft.continuum import experiment as ex
    from probsft.continuum.predictions import REGIONS, region_of

    model, tok = shipped
    assert type(model).__name__ == "LlamaForCausalLM"
    p = {name: probe(model, tok, sample(TASKS[name], "train", 48, 0), batch_size=48,
                     placement="answer")["answer_mean_p"] for name in ex.POSITIONS}
    assert len(p) >= 8 and min(p.values()) < 0.05 and max(p.values()) > 0.8, p
    for region in REGIONS:
        assert sum(region_of(v) is region for v in p.values()) >= 2, (region.name, p)


def test_strong_positions_leave_room_to_improve(shipped):
    """Base held-out exact match of every strong position lies in [30%, 85%] (small sample)."""
    from probsft.continuum import experiment as ex
    from probsft.validate.evaluate import evaluate
    from probsft.continuum.predictions import region_of

    model, tok = shipped
    strong = [n for n in ex.POSITIONS if region_of(probe(
        model, tok, sample(TASKS[n], "train", 48, 0), batch_size=48,
        placement="answer")["answer_mean_p"]).name == "model-strong"]
    assert strong
    for name in strong:
        summary, _ = evaluate(model, tok, sample(TASKS[name], "heldout", 64, 0), max_new_tokens=10,
                              batch_size=64)
        # [30%, 85%] asked; ±5 points for the 64-item sample (the grid's 200 items: README)
        assert 0.25 <= summary["eval/exact_match"] <= 0.9, (name, summary["eval/exact_match"])


def test_documents_end_with_the_sft_eos_token(shipped):
    from probsft.validate.backbone import document
    from probsft.validate.data import encode_pair

    rec = sample(TASKS["letter_jumble"], "pretrain", 1, 0)[0]
    model, tok = shipped
    ids, _ = encode_pair(rec, tok)
    assert tok.encode(document(rec, BackboneConfig())) == ids          # the SFT tokens exactly
    assert tok.encode(document(rec, BackboneConfig(eos=False)))[-1] == tok.encode("\n")[0]


def test_build_is_deterministic_and_stage1_folder_gives_the_same_model(tmp_path):
    """Two builds of one config give identical weights, and starting stage 2 from a saved stage 1
    (``--stage1``) gives the weights of the two-stage build (small config, few steps)."""
    import torch
    from safetensors.torch import load_file

    from probsft.validate.backbone import build

    cfg = BackboneConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32, steps=6,
                         batch_size=4, warmup=2, dial_steps=5, dial_batch_size=4, pool=40)
    weights = lambda d: load_file(str(d / "model.safetensors"))
    build(cfg, tmp_path / "a", progress=False, probe_n=4)
    build(cfg, tmp_path / "b", progress=False, probe_n=4)
    build(dataclasses.replace(cfg, dial_steps=0), tmp_path / "s1", progress=False, probe_n=4)
    build(cfg, tmp_path / "c", progress=False, probe_n=4, stage1=tmp_path / "s1")
    a, b, c, s1 = (weights(tmp_path / n) for n in ("a", "b", "c", "s1"))
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    assert not all(torch.equal(a[k], s1[k]) for k in a)           # stage 2 did change the model


def test_checkpoints_along_the_dial_leave_the_run_unchanged(tmp_path):
    """``save_at`` saves the model at dial steps (0: the stage-1 model) with its dial probe, and the
    final model is the one a build without checkpoints gives (saving and probing never touch the
    run); a checkpoint at the last step is that final model."""
    import json

    import torch
    from safetensors.torch import load_file

    from probsft.errors import ConfigError
    from probsft.validate.backbone import build

    cfg = BackboneConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32, steps=6,
                         batch_size=4, warmup=2, dial_steps=5, dial_batch_size=4, pool=40)
    weights = lambda d: load_file(str(d / "model.safetensors"))
    build(cfg, tmp_path / "plain", progress=False, probe_n=4)
    record = build(cfg, tmp_path / "dial", progress=False, probe_n=4, save_at=(0, 2, 5))
    plain, dial = weights(tmp_path / "plain"), weights(tmp_path / "dial")
    assert all(torch.equal(plain[k], dial[k]) for k in plain)
    last, first = weights(tmp_path / "dial" / "dial_step_5"), weights(tmp_path / "dial" / "dial_step_0")
    assert all(torch.equal(plain[k], last[k]) for k in plain)
    assert not all(torch.equal(plain[k], first[k]) for k in plain)
    assert set(record["checkpoints"]) == {"0", "2", "5"}
    assert record["checkpoints"]["5"] == record["dial"]
    assert json.loads((tmp_path / "dial" / "build.json").read_text())["checkpoints"]["2"]
    with pytest.raises(ConfigError, match="save-at"):
        build(cfg, tmp_path / "bad", progress=False, probe_n=4, save_at=(6,))


def test_positions_near_takes_each_task_once():
    from probsft.validate.backbone import positions_near

    dial = {"a": {"answer_p": 0.1}, "b": {"answer_p": 0.5}, "c": {"answer_p": 0.55}}
    assert positions_near(dial, (0.5, 0.5, 0.0)) == ("b", "c", "a")
    with pytest.raises(ConfigError, match="targets"):
        positions_near(dial, (0.1,) * 4)
