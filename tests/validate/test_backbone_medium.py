"""The shipped medium backbone (issue 24) at a tiny slice: it loads with plain transformers, is the
registered size and build, and one fine-tune step of the runner trains it. The medium is exercised
nowhere else in the tests (its dial's runs take an hour; their results are checked from files)."""

import json

import torch

from probsft.validate.backbone import SHIPPED_MEDIUM, BackboneConfig, corpus, size_config
from probsft.validate.pretrain import corpus_sha256

PARAMS = 8_928_384


def test_the_medium_loads_with_plain_transformers_and_is_the_registered_build():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(SHIPPED_MEDIUM)
    tok = AutoTokenizer.from_pretrained(SHIPPED_MEDIUM)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == PARAMS
    cfg = BackboneConfig.from_dict(json.loads((SHIPPED_MEDIUM / "backbone_config.json").read_text()))
    assert cfg == size_config("medium", dial_steps=600)
    record = json.loads((SHIPPED_MEDIUM / "build.json").read_text())
    assert record["params"] == PARAMS and record["threads"] == 1
    assert sorted(map(int, record["checkpoints"])) == [25, 50, 75, *range(100, 601, 50)]
    # the recorded data hash is the corpus the config regenerates; the loss fell in both stages
    assert record["data_sha256"] == corpus_sha256({**corpus(cfg), **corpus(cfg, cfg.dial_mix)})
    for stage in ("stage1", "dial"):
        curve = record["loss_curve"][stage]
        assert curve[-1] < curve[0]
    ids = tok("rol abcde\n", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()


def test_one_runner_step_trains_the_medium():
    from probsft.validate.data import tokenize_sft
    from probsft.validate.loading import load_model_and_tokenizer
    from probsft.validate.tasks import TASKS, sample
    from probsft.validate.train import FinetuneConfig, finetune

    model, tok = load_model_and_tokenizer(SHIPPED_MEDIUM)
    before = model.lm_head.weight.detach().clone()
    examples = tokenize_sft(sample(TASKS["t_rol"], "train", 2, 0), tok, 64)
    cfg = FinetuneConfig(model=str(SHIPPED_MEDIUM), data=None, objective="p", batch_size=2,
                         max_steps=1, lr=1e-4, save_model=False)
    metrics = finetune(cfg, model, tok, progress=False, examples=examples)
    assert 0 < metrics["train/tokens_seen"] and torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert not torch.equal(before, model.lm_head.weight)
