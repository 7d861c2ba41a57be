"""The dial grid: paired design (same noise within a seed), placement by answer tokens, resume, and the
paired analysis on synthetic rows with known answers."""

import copy
import csv
import json

import numpy as np
import pytest
import torch

import probsft
from probsft.errors import ConfigError, SpecError
from probsft.theory.losses import counted_tokens
from probsft.continuum import experiment as ex
from probsft.continuum import analysis as an
from probsft.continuum.grids import grid
from probsft.validate.backbone import load
from probsft.validate.data import collate, tokenize_sft
from probsft.validate.tasks import TASKS, sample
from probsft.validate.train import FinetuneConfig, finetune


@pytest.fixture(scope="module")
def backbone():
    return load()


@pytest.mark.parametrize("spec", ["nll", "p", "alpha(10)", "nll@p>=0.2"])
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


@pytest.mark.parametrize("spec, optimizer", [("nll", "adamw"), ("p", "adamw"), ("p", "sgd")])
def test_one_step_finetune_moves_along_the_gradient(backbone, spec, optimizer):
    """One step from the base weights: SGD's first update is exactly −lr·g (momentum buffer = g),
    AdamW's first update has sign −sign(g) on every coordinate with a non-negligible gradient."""
    import probsft
    from probsft.validate.data import collate

    base, tok = backbone
    model = copy.deepcopy(base)
    data = tokenize_sft(sample(TASKS["t_rev"], "train", 8, 0), tok, 256)
    batch = collate(data, tok.pad_token_id)
    ref = copy.deepcopy(base)
    logits = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = probsft.objective(spec).loss(logits[:, :-1], batch["labels"][:, 1:])
    loss.backward()
    lr = 1.0 if optimizer == "sgd" else 1e-3      # SGD: a step well above float32 rounding of w
    finetune(FinetuneConfig(model="backbone", objective=spec, max_steps=1, batch_size=8, lr=lr,
                            optimizer=optimizer, warmup_ratio=0.0, weight_decay=0.0,
                            max_grad_norm=0.0, device="cpu"),
             model=model, tokenizer=tok, progress=False, examples=data)
    w = dict(model.named_parameters())
    name, p0 = "lm_head.weight", dict(base.named_parameters())["lm_head.weight"]
    g = dict(ref.named_parameters())[name].grad
    step = (w[name] - p0).detach()
    big = g.abs() > 1e-3 * g.abs().max()          # coordinates above float32 rounding of w + step
    assert big.sum() > 100
    if optimizer == "sgd":
        torch.testing.assert_close(step[big], -lr * g[big], rtol=2e-2, atol=0)
    else:
        assert bool((torch.sign(step[big]) == -torch.sign(g[big])).all())


def test_config_is_strict():
    with pytest.raises(ConfigError):
        ex.ExperimentConfig.from_dict({"steps": 3, "typo": 1})
    with pytest.raises(SpecError):
        ex.ExperimentConfig(objectives=("nll", "p", "bogus objective"))
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(objectives=("p", "alpha(10)"))       # the comparison is against nll
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(tasks=("nope",))
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(supervision=("clean", "typo"))
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(optimizers=("adam",))
    with pytest.raises(ConfigError):
        ex.ExperimentConfig(seeds=(0,))                           # no paired CI from one seed


def test_grids_cover_the_brief():
    assert ex.REDUCED.objectives == ("nll", "p") and ex.REDUCED.optimizers == ("adamw",)
    assert ex.REDUCED.supervision == ("clean", "token") and len(ex.REDUCED.seeds) >= 5
    assert ex.REDUCED.n_heldout >= 200 and len(ex.REDUCED.tasks) >= 8
    assert set(ex.FULL.objectives) == {"nll", "p", "alpha(0.1)", "alpha(0.5)", "alpha(2)",
                                       "alpha(10)", "nll@p>=0.2", "dft", "deft", "alpha(auto)"}
    assert ex.FULL.optimizers == ("adamw", "sgd") and len(ex.FULL.supervision) == 4
    assert grid("reduced").folder == "validate" and grid("full").folder == "validate_full"


@pytest.mark.parametrize("kind", ["token", "answer", "plausible"])
def test_noise_is_the_same_within_a_seed_and_never_the_truth(backbone, kind):
    base, tok = backbone
    cfg = ex.ExperimentConfig(noise_rate=0.5, max_new_tokens=10)
    records = sample(TASKS["t_swp"], "train", 12, 0)
    clean = tokenize_sft(records, tok, 256)
    a, n_a = ex.supervised(kind, records, clean, base, tok, cfg, seed=3)
    b, n_b = ex.supervised(kind, records, clean, base, tok, cfg, seed=3)
    c, _ = ex.supervised(kind, records, clean, base, tok, cfg, seed=4)
    assert [e["labels"] for e in a] == [e["labels"] for e in b] and n_a == n_b > 0
    assert [e["labels"] for e in a] != [e["labels"] for e in c]
    changed = [x["labels"] != y["labels"] for x, y in zip(a, clean)]
    assert sum(changed) <= 6 if kind != "token" else sum(changed) >= 1
    if kind == "plausible":
        assert sum(changed) == n_a           # every counted record got a wrong answer


def test_grid_runs_places_by_answer_tokens_and_resumes(tmp_path):
    cfg = ex.ExperimentConfig(tasks=("t_rev",), objectives=("nll", "p"), seeds=(0, 1),
                              supervision=("clean", "token"), steps=1, batch_size=4, n_train=8,
                              n_heldout=4, max_new_tokens=3)
    path = ex.run_grid(cfg, tmp_path, progress=False)
    rows = list(csv.DictReader(open(path)))
    assert [r["objective"] for r in rows] == ["base"] + ["nll", "p"] * 4
    assert [(r["seed"], r["supervision"]) for r in rows[1::2]] == [
        ("0", "clean"), ("0", "token"), ("1", "clean"), ("1", "token")]
    assert all(len(r["items"]) == 4 and set(r["items"]) <= {"0", "1"} for r in rows)
    assert [np.mean([int(c) for c in r["items"]]) for r in rows] == \
        pytest.approx([float(r["exact_match"]) for r in rows])
    probes = json.loads((tmp_path / "probes.json").read_text())["t_rev"]
    assert probes["placement"] == "answer"
    assert probes["placement_mean_p"] == probes["answer_mean_p"] != probes["mean_p"]
    assert float(rows[0]["probe_answer_p"]) == pytest.approx(probes["answer_mean_p"], abs=1e-4)
    assert probes["region"] == ex.pred.region_of(probes["answer_mean_p"]).name
    rows[-1]["seconds"] = "-1"      # a marker: a resumed grid must keep finished runs untouched
    ex.write_rows(path, rows)
    ex.run_grid(cfg, tmp_path, progress=False)
    again = list(csv.DictReader(open(path)))
    assert len(again) == 9 and again[-1]["seconds"] == "-1"
    result = an.write_analysis(again, tmp_path)
    with open(tmp_path / "paired.csv", newline="") as fh:
        assert next(csv.reader(fh)) == an.PAIRED_FIELDS
    assert {(c["supervision"], c["n_seeds"]) for c in result["cells"]} == {("clean", 2), ("token", 2)}


def _rows(per_seed_items, region="model-strong", sup="token", p_probe=0.8):
    """Rows of one position: {objective: [S, N] 0/1 arrays}."""
    rows = []
    for spec, items in per_seed_items.items():
        for seed, it in enumerate(items):
            rows.append({"position": "t_x", "region": region, "probe_answer_p": str(p_probe),
                         "supervision": sup, "optimizer": "adamw", "objective": spec,
                         "seed": str(seed), "exact_match": str(np.mean(it)),
                         "train_answer_p": "0.5", "items": "".join(str(int(v)) for v in it)})
    return rows


def test_paired_cells_on_known_items():
    rng = np.random.default_rng(0)
    nll = (rng.random((5, 200)) < 0.4).astype(int)
    better = nll.copy()
    better[:, :30] = 1                             # −p right on 30 more items of 200 in every seed
    better[:, :30][nll[:, :30] == 1] = 1
    gain = (better - nll).mean()
    (c,) = an.paired_cells(_rows({"nll": nll, "p": better}))
    assert c["delta"] == pytest.approx(100 * gain, abs=0.01)
    assert c["prediction"] == "p" and c["verdict"] == "confirmed"
    assert c["ci_low"] > 0 and set(an.PAIRED_FIELDS) <= set(c)
    (c,) = an.paired_cells(_rows({"nll": better, "p": nll}))
    assert c["verdict"] == "refuted"
    assert c["per_seed"] == pytest.approx([100 * (a - b).mean() for a, b in zip(nll, better)])
    (c,) = an.paired_cells(_rows({"nll": nll, "p": nll}, sup="clean"))     # identical: a tie
    assert c["prediction"] == "nll_or_tie" and c["verdict"] == "confirmed"
    (c,) = an.paired_cells(_rows({"nll": nll, "p": nll}, region="model-weak"))
    assert c["prediction"] == "nll" and c["verdict"] == "equivalent"


def test_a_changed_config_never_overwrites_earlier_stale_results(tmp_path):
    import dataclasses
    import json

    cfg = ex.ExperimentConfig(tasks=(ex.POSITIONS[0],), objectives=("nll", "p"), seeds=(0, 1),
                              supervision=("clean",), steps=1, batch_size=4, n_train=8, n_heldout=4)
    for steps in (1, 2, 3):     # deadline 0: set aside, probe, then stop before the first cell
        (tmp_path / "results.csv").write_text(f"results of steps={steps}\n")
        ex.run_grid(dataclasses.replace(cfg, steps=steps), tmp_path, progress=False, deadline_s=0)
    assert (tmp_path / "results.csv.stale").read_text() == "results of steps=2\n"
    assert (tmp_path / "results.csv.stale2").read_text() == "results of steps=3\n"
    assert json.loads((tmp_path / "config.json.stale").read_text())["steps"] == 1
    assert json.loads((tmp_path / "config.json.stale2").read_text())["steps"] == 2
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3


def test_plan_runs_base_first_then_seed_blocks_and_skips_finished_runs():
    cfg = ex.ExperimentConfig(tasks=("t_rev", "t_sh1"), objectives=("nll", "p"), seeds=(0, 1, 2),
                              supervision=("clean", "token"))
    groups = ex.plan(cfg)
    assert [g[:3] for g in groups[:2]] == [("t_rev", "clean", 0), ("t_sh1", "clean", 0)]
    assert all(g[3] == [("none", "base")] for g in groups[:2])
    # seeds 0 and 1 of every position before seed 2 of any (the first paired CI comes first)
    seeds = [g[2] for g in groups[2:]]
    assert seeds == [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2]
    assert sum(len(g[3]) for g in groups) == 2 + 2 * 3 * 2 * 2
    done = {("t_rev", "token", "adamw", "nll", 1), ("t_sh1", "clean", "none", "base", 0)}
    left = ex.plan(cfg, done)
    assert sum(len(g[3]) for g in left) == 2 + 2 * 3 * 2 * 2 - 2
    assert ("t_rev", "token", 1, [("adamw", "p")]) in left


def test_workers_give_the_same_rows_as_one_process(tmp_path):
    """A run is a pure function of its seed: two worker processes write the rows one process does
    (all but the timings), including the shared noise draw of a group."""
    cfg = ex.ExperimentConfig(tasks=("t_rev", "t_sh1"), objectives=("nll", "p"), seeds=(0, 1),
                              supervision=("token",), steps=2, batch_size=4, n_train=8,
                              n_heldout=6, max_new_tokens=3)
    one = list(csv.DictReader(open(ex.run_grid(cfg, tmp_path / "one", progress=False))))
    two = list(csv.DictReader(open(ex.run_grid(cfg, tmp_path / "two", progress=False, workers=2))))
    strip = lambda rows: sorted(tuple((k, v) for k, v in r.items() if k != "seconds") for r in rows)
    assert len(one) == 2 + 2 * 2 * 2 and strip(one) == strip(two)
    with pytest.raises(ConfigError, match="workers"):
        ex.run_grid(cfg, tmp_path / "one", progress=False, workers=0)


def test_more_axes_keep_finished_runs_but_another_backbone_starts_over(tmp_path):
    import dataclasses

    from probsft.validate.backbone import SHIPPED

    cfg = ex.ExperimentConfig(tasks=("t_rev",), objectives=("nll", "p"), seeds=(0, 1),
                              supervision=("clean",), steps=1, batch_size=4, n_train=8,
                              n_heldout=4, max_new_tokens=3)
    path = ex.run_grid(cfg, tmp_path, progress=False)
    rows = list(csv.DictReader(open(path)))
    rows[-1]["seconds"] = "-1"                  # marks a finished run
    ex.write_rows(path, rows)
    grown = dataclasses.replace(cfg, objectives=("nll", "p", "dft"), seeds=(0, 1, 2))
    ex.run_grid(grown, tmp_path, progress=False, deadline_s=0)
    assert not list(tmp_path.glob("*.stale*"))
    assert list(csv.DictReader(open(path)))[-1]["seconds"] == "-1"
    assert ex.run_settings(json.loads((tmp_path / "config.json").read_text())) == \
        ex.run_settings({**dataclasses.asdict(cfg), "model_sha256": ex.model_fingerprint()})
    model, tok = load()                          # another backbone: the same one, one weight moved
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    other = tmp_path / "other_backbone"
    model.save_pretrained(other)
    tok.save_pretrained(other)
    assert ex.model_fingerprint(other) != ex.model_fingerprint(SHIPPED)
    ex.run_grid(grown, tmp_path / "grid", progress=False, deadline_s=0)
    ex.run_grid(grown, tmp_path / "grid", model_path=other, progress=False, deadline_s=0)
    assert (tmp_path / "grid" / "config.json.stale").exists()
    with pytest.raises(ConfigError, match="no weights"):
        ex.model_fingerprint(tmp_path / "grid")


def test_alpha_of_places_nll_and_p_in_the_family():
    assert [an.alpha_of(s) for s in ("nll", "p", "alpha(0.1)", "alpha(10)", "alpha(1)")] == \
        [0.0, 1.0, 0.1, 10.0, 1.0]
    assert [an.alpha_of(s) for s in ("dft", "deft", "alpha(auto)", "nll@p>=0.2")] == [None] * 4


def test_best_alpha_and_its_trend_on_known_rows():
    """Three positions whose best α is planted at 0, 1 and 10: the trend is +1 (p-value small);
    a position where every α scores the same is tied and left out of the trend."""
    rows = []
    plant = {"a": (0.1, 0.0), "b": (0.5, 1.0), "c": (0.9, 10.0), "d": (0.7, None)}
    for pos, (p, best) in plant.items():
        for spec in ("nll", "p", "alpha(0.5)", "alpha(10)", "dft"):
            a = an.alpha_of(spec)
            score = 0.3 if best is None else 0.6 if a == best else 0.2
            for seed in (0, 1):
                rows.append({"position": pos, "probe_answer_p": str(p), "supervision": "clean",
                             "optimizer": "adamw", "objective": spec, "seed": str(seed),
                             "exact_match": str(score)})
    best = an.best_alpha(rows)
    assert [(b["position"], b["best_alpha"], b["tied"]) for b in best] == [
        ("a", 0.0, False), ("b", 1.0, False), ("d", 0.0, True), ("c", 10.0, False)]
    assert best[0]["means"] == {"0": 60.0, "0.5": 20.0, "1": 20.0, "10": 20.0}
    trend = an.alpha_trend(best, perms=2000)["clean/adamw"]
    assert trend["n"] == 3 and trend["rho"] == pytest.approx(1.0)
    assert trend["p_value"] == pytest.approx(1 / 6, abs=0.03)     # 1 of 3! orders is as extreme
    assert an.best_alpha([r for r in rows if r["objective"] in ("nll", "p")]) == []


def test_adaptive_against_the_best_fixed_objective_on_known_items():
    """deft planted equal to the best fixed objective: not worse; alpha(auto) planted 15 points
    below it in every seed: worse. The best fixed one is chosen by mean exact match."""
    rng = np.random.default_rng(3)
    nll = (rng.random((5, 200)) < 0.3).astype(int)
    good = nll.copy()
    good[:, :40] = 1
    bad = good.copy()
    bad[:, 40:100] = 0
    bad[:, :30] = 0
    rows = _rows({"nll": nll, "p": good, "deft": good, "alpha(auto)": bad})
    got = {c["objective"]: c for c in an.adaptive_vs_fixed(rows)}
    assert got["deft"]["best_fixed"] == "p" and got["deft"]["status"] == "not worse"
    assert got["deft"]["delta"] == 0
    assert got["alpha(auto)"]["status"] == "worse" and got["alpha(auto)"]["ci_high"] < 0
    assert an.adaptive_vs_fixed(_rows({"nll": nll, "p": good})) == []


def test_figures_draw_every_panel_and_the_alpha_trend_from_saved_results(tmp_path):
    """Two optimizers x two supervision kinds and the α family in the rows: the continuum figure
    and the α figure are drawn from the saved verdicts.json alone."""
    from probsft.figures.continuum import draw

    rng = np.random.default_rng(4)
    rows = []
    for pos, p in (("a", 0.1), ("b", 0.5), ("c", 0.9)):
        for sup in ("clean", "token"):
            for opt in ("adamw", "sgd"):
                for spec in ("nll", "p", "alpha(10)", "deft"):
                    items = (rng.random((3, 20)) < p).astype(int)
                    rows += [{**r, "optimizer": opt} for r in
                             _rows({spec: items}, region=ex.pred.region_of(p).name, sup=sup,
                                   p_probe=p)]
    for r in rows:
        r["position"] = f"t_{r['probe_answer_p']}"
    result = an.write_analysis(rows, tmp_path)
    assert {(c["supervision"], c["optimizer"]) for c in result["cells"]} == {
        (s, o) for s in ("clean", "token") for o in ("adamw", "sgd")}
    by_kind = result["counts_by_kind"]
    assert len(by_kind) == 4 and all(sum(c.values()) == 3 for c in by_kind.values())
    assert {v: sum(c[v] for c in by_kind.values()) for v in ex.pred.VERDICTS} == result["counts"]
    assert len(result["alpha"]) == 12 and set(result["alpha_trend"]) == {
        f"{s}/{o}" for s in ("clean", "token") for o in ("adamw", "sgd")}
    paths = draw(tmp_path / "verdicts.json", tmp_path / "continuum")
    names = sorted(p.name for p in paths)
    assert names == ["continuum.png", "continuum.svg", "continuum_alpha.png", "continuum_alpha.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_reproduce_reports_the_full_grids_saved_runs_only_for_this_backbone(tmp_path):
    """The main job's validate step analyses validate_full/ from its saved rows (no new runs) when
    they are of the shipped backbone, and says so instead when they are of another one."""
    import dataclasses

    from probsft.reproduce.validate import saved_full

    assert saved_full(tmp_path) == []
    folder = tmp_path / grid("full").folder
    folder.mkdir()
    rng = np.random.default_rng(5)
    rows = _rows({spec: (rng.random((3, 20)) < 0.5).astype(int)
                  for spec in ("nll", "p", "alpha(0.5)", "deft")})
    ex.write_rows(folder / "results.csv", [{k: r.get(k, "") for k in ex.FIELDS} for r in rows])
    config = {**dataclasses.asdict(ex.FULL), "model_sha256": ex.model_fingerprint()}
    (folder / "config.json").write_text(json.dumps(config))
    lines = saved_full(tmp_path)
    assert "### The full grid, from its saved runs" in lines
    assert any(line.startswith("Runs finished: 12 of 4010") for line in lines)
    assert any(line.startswith("- deft:") for line in lines)       # adaptive vs best fixed
    assert (folder / "paired.csv").exists() and (folder / "continuum.png").exists()
    (folder / "config.json").write_text(json.dumps({**config, "model_sha256": "other"}))
    assert "another backbone" in saved_full(tmp_path)[1]


def test_reproduce_reports_another_backbone_and_scores_the_rules_on_it(tmp_path):
    """Another backbone's saved grid is reported only for its own weights, and each rule, set on
    the rule grids, is scored on every one of its cells (all held out), beside fixed choices."""
    import dataclasses

    from probsft.continuum.grids import OTHERS
    from probsft.reproduce.validate import saved_other
    from probsft.continuum.cells import fixed_choice, read_paired
    from probsft.continuum.rule import hit_rate

    second = OTHERS[0]
    assert saved_other(tmp_path, second) == []
    rng = np.random.default_rng(7)
    for name, model in ((grid("full").folder, None), (second.folder, second.model_path)):
        folder = tmp_path / name
        folder.mkdir()
        rows = _rows({spec: (rng.random((3, 20)) < 0.5).astype(int)
                      for spec in ("nll", "p", "alpha(0.5)", "deft")})
        ex.write_rows(folder / "results.csv", [{k: r.get(k, "") for k in ex.FIELDS} for r in rows])
        config = {**dataclasses.asdict(ex.FULL), "model_sha256": ex.model_fingerprint(model)}
        (folder / "config.json").write_text(json.dumps(config))
    an.write_analysis(ex.read_rows(tmp_path / grid("full").folder / "results.csv"),
                      tmp_path / grid("full").folder)
    lines = saved_other(tmp_path, second)
    assert f"### {second.title}" in lines
    cells = read_paired(tmp_path / grid("full").folder / "paired.csv")
    test = read_paired(tmp_path / second.folder / "paired.csv")
    lines = lines[next(i for i, x in enumerate(lines)
                       if x.startswith("**The recommendation rules on this grid")):]
    for rule in ("delta", "band"):
        want = hit_rate(cells, sorted({c["position"] for c in cells}), test_cells=test,
                        rule=rule)["held_out"]
        line = next(x for x in lines if x.startswith(f"- rule `{rule}`"))
        assert f"**{want['hits']}/{want['scored']}" in line and want["scored"] > 0
        assert ("registered before" in line) == (rule in second.registered)
    deft = fixed_choice(test, "deft")["all"]
    assert any(x.startswith(f"- always deft (no rule): {deft['hits']}/{deft['scored']}")
               for x in lines)
    assert (tmp_path / second.folder / "continuum.png").exists()
    # saved position features (probsft.continuum.features) become a table, positions by p
    from probsft.reproduce.validate import FEATURE_HEADS
    from probsft.continuum.features import FEATURES

    assert not any("probsft.continuum.features" in x for x in saved_other(tmp_path, second))
    assert set(FEATURE_HEADS) == set(FEATURES)
    feats = {"t_b": {f: 0.5 for f in FEATURES}, "t_a": {**{f: 0.25 for f in FEATURES}, "answer_p": 0.1}}
    (tmp_path / second.folder / "features.json").write_text(json.dumps(feats))
    lines = saved_other(tmp_path, second)
    head = next(i for i, x in enumerate(lines) if "probsft.continuum.features" in x)
    table = [x for x in lines[head:] if x.startswith("| t_")]
    assert table == ["| t_a | 0.100 | " + " | ".join(["0.250"] * (len(FEATURES) - 1)) + " |",
                     "| t_b | " + " | ".join(["0.500"] * len(FEATURES)) + " |"]
    (tmp_path / second.folder / "config.json").write_text(json.dumps({**config,
                                                                      "model_sha256": "x"}))
    assert "not of models/backbone_b" in saved_other(tmp_path, second)[1]
