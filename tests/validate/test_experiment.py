"""The continuum experiment: a one-step fine-tune per objective on the shipped backbone changes the
weights; the verdict logic on synthetic result tables (agree / disagree / tie); the grid resumes."""

import copy
import csv

import pytest
import torch

import probsft
from probsft.errors import ConfigError, SpecError
from probsft.theory.losses import counted_tokens
from probsft.validate import experiment as ex
from probsft.validate.backbone import load
from probsft.validate.data import collate, tokenize_sft
from probsft.validate.tasks import TASKS, sample
from probsft.validate.train import FinetuneConfig, finetune


@pytest.fixture(scope="module")
def backbone():
    return load()


@pytest.mark.parametrize("spec", ex.REDUCED.objectives)
def test_one_step_finetune_follows_the_objective(backbone, spec):
    """The step's gradient is dL/dtheta of L = mean over counted tokens of f(p), with f written in
    plain torch (tests/theory/test_losses.py's reference) and the backbone in float64: a wrong
    objective, threshold or normaliser in the fine-tune path changes it by far more than float32."""
    from tests.theory.test_losses import reference_loss
    from tests.validate.conftest import assert_grads_close, optimizer_step_gradients

    base, tok = backbone
    model = copy.deepcopy(base)
    data = tokenize_sft(sample(TASKS["letter_jumble"], "train", 8, 0), tok, 256)
    with optimizer_step_gradients() as steps:
        finetune(FinetuneConfig(model="backbone", objective=spec, max_steps=1, batch_size=8, lr=1e-3,
                                max_grad_norm=0.0, device="cpu"),
                 model=model, tokenizer=tok, progress=False, examples=data)
    ref_model = copy.deepcopy(base).double()
    batch = collate(list(data), tok.pad_token_id)
    logits = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    obj = probsft.objective(spec)
    labels = batch["labels"][:, 1:]
    ref_loss = reference_loss(obj, logits[:, :-1], labels)
    if obj.interval is not None:                 # the threshold must select a strict subset
        assert 0 < counted_tokens(obj, logits[:, :-1], labels) < int((labels != -100).sum())
    ref = torch.autograd.grad(ref_loss, list(ref_model.parameters()))
    (grads,) = steps
    assert_grads_close(grads, ref, rtol=1e-4, atol_scale=1e-5)
    before = dict(base.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def _rows(task, region, noise, p_vals, nll_vals, key="exact_match"):
    rows = []
    for spec, vals in (("p", p_vals), ("nll", nll_vals)):
        for seed, v in enumerate(vals):
            rows.append({"task": task, "role": "", "region": region, "probe_mean_p": "0.5",
                         "noise": str(noise), "objective": spec, "label": spec, "seed": str(seed),
                         "exact_match": str(v), "jaro_winkler": str(v), "train_mean_p": "0.5",
                         "train_answer_p": "0.6", "train_eos_p": "0.1", "seconds": "1"})
    return rows


@pytest.mark.parametrize("region,noise,p_vals,nll_vals,outcome,agrees", [
    ("model-strong", 0.2, [0.50, 0.52, 0.51], [0.30, 0.31, 0.29], "p", True),       # agree
    ("model-strong", 0.2, [0.30, 0.31, 0.29], [0.50, 0.52, 0.51], "nll", False),    # disagree
    ("model-strong", 0.0, [0.40, 0.41, 0.40], [0.40, 0.40, 0.41], "tie", True),     # tie = NLL >= -p
    ("model-weak", 0.0, [0.40, 0.41, 0.40], [0.40, 0.40, 0.41], "tie", False),      # tie, NLL expected
    ("model-intermediate", 0.0, [0.4, 0.6, 0.5], [0.45, 0.55, 0.5], "tie", True),   # noisy seeds
    ("model-intermediate", 0.0, [0.60, 0.61, 0.60], [0.40, 0.40, 0.41], "p", False),
])
def test_verdict_logic(region, noise, p_vals, nll_vals, outcome, agrees):
    _, verdicts = ex.summarize(_rows("spell_backward", region, noise, p_vals, nll_vals))
    (v,) = verdicts
    assert (v["measured"], v["agrees"]) == (outcome, agrees)
    assert v["delta_p_minus_nll"] == pytest.approx(sum(p_vals) / 3 - sum(nll_vals) / 3)


def test_config_is_strict():
    with pytest.raises(ConfigError):
        ex.ExperimentConfig.from_dict({"steps": 3, "typo": 1})
    with pytest.raises(SpecError):
        ex.ExperimentConfig(objectives=("nll", "p", "bogus objective"))
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(objectives=("nll", "alpha(10)"))     # the verdict needs nll and p
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(tasks=("nope",))


def test_grid_runs_and_resumes(tmp_path):
    cfg = ex.ExperimentConfig(tasks=("letter_jumble",), objectives=("nll", "p"), seeds=(0,),
                              noise=(0.0,), steps=1, batch_size=4, n_train=8, n_heldout=4,
                              max_new_tokens=3)
    path = ex.run_grid(cfg, tmp_path, progress=False)
    rows = list(csv.DictReader(open(path)))
    assert [r["objective"] for r in rows] == ["base", "nll", "p"]
    for r in rows:      # the fit after SFT: all tokens = a mix of answer tokens and eos
        lo, hi = sorted((float(r["train_answer_p"]), float(r["train_eos_p"])))
        assert lo - 1e-4 <= float(r["train_mean_p"]) <= hi + 1e-4
    rows[-1]["seconds"] = "-1"      # a marker: a resumed grid must keep finished cells untouched
    ex._write_rows(path, rows)
    ex.run_grid(cfg, tmp_path, progress=False)
    again = list(csv.DictReader(open(path)))
    assert len(again) == 3 and again[-1]["seconds"] == "-1"


def test_reduced_and_full_grids_keep_separate_folders():
    assert ex.folder(False) == "validate" and ex.folder(True) == "validate_full"
    assert ex.FULL != ex.REDUCED      # one folder each, so neither run sets the other's results aside


def test_a_changed_config_never_overwrites_earlier_stale_results(tmp_path):
    import dataclasses
    import json

    cfg = ex.ExperimentConfig(tasks=("letter_jumble",), objectives=("nll", "p"), seeds=(0,),
                              noise=(0.0,), steps=1, batch_size=4, n_train=8, n_heldout=4)
    for steps in (1, 2, 3):     # deadline 0: set aside, probe, then stop before the first cell
        (tmp_path / "results.csv").write_text(f"results of steps={steps}\n")
        ex.run_grid(dataclasses.replace(cfg, steps=steps), tmp_path, progress=False, deadline_s=0)
    assert (tmp_path / "results.csv.stale").read_text() == "results of steps=2\n"
    assert (tmp_path / "results.csv.stale2").read_text() == "results of steps=3\n"
    assert json.loads((tmp_path / "config.json.stale").read_text())["steps"] == 1
    assert json.loads((tmp_path / "config.json.stale2").read_text())["steps"] == 2
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3
