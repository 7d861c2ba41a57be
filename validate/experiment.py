"""The capability continuum as a dose–response curve on a real transformer (paired design).

Positions are the dial's tasks (probsft.validate.tasks.DIAL): one format, distinct character
transformations the shipped backbone saw at graded doses, so the probe places each at its own base
answer-token mean p (probsft.validate.predictions.PLACEMENT). For each position, seed, supervision
kind, optimizer and objective the base model is fine-tuned and evaluated on ≥ 200 held-out items.

Paired design: within a seed every objective starts from the same base weights, sees the same
batches (probsft.validate.train.micro_batches_for_step is a pure function of seed and step) and the
same supervision noise (seeded by the seed), so each objective is compared with NLL item by item
(probsft.validate.stats). Supervision kinds (predictions.SUPERVISION):

* ``clean``: the true answers;
* ``token``: a fraction ``noise_rate`` of answer tokens replaced by other tokens (input and label);
* ``answer``: a fraction of records given another record's answer;
* ``plausible``: a fraction of records given a wrong answer *sampled from the base model*
  (temperature 1; the first of ``PLAUSIBLE_TRIES`` samples that differs from the true answer; a
  record whose samples are all right stays clean, and the achieved rate is counted).

Predictions and the verdict rule live in probsft.validate.predictions; this module only runs and
tabulates. Results: ``<out>/results.csv`` (one row per run, with the held-out items' exact match as a
0/1 string, rewritten atomically after every run, so an interrupted grid resumes), ``probes.json``,
``config.json``; :func:`analyse` turns the rows into the paired cells, verdicts, crossover,
fit-follows-winner and α trend (pure: no model needed).

    probsft validate [--full] [--out DIR] [--model PATH]
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from probsft.config import config_from_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write, set_aside
from probsft.paths import DATA
from probsft.validate import predictions as pred

FIELDS = ["position", "region", "probe_answer_p", "probe_mean_p_all", "supervision", "optimizer",
          "objective", "label", "seed", "noisy", "exact_match", "train_mean_p", "train_answer_p",
          "train_eos_p", "items", "seconds"]
PAIRED_FIELDS = ["position", "probe_answer_p", "supervision", "optimizer", "objective", "n_seeds",
                 "delta", "ci_low", "ci_high", "tost_low", "tost_high", "mde", "verdict"]
PLAUSIBLE_TRIES = 8
# The dial's positions: every transformation of the shipped backbone except ``cpy`` (copying, the
# operation the others vary). Ordered to alternate across the continuum, so a partial grid (the runs
# go position by position) already spans it.
POSITIONS = ("t_sh1", "t_nov", "t_sh3", "t_rol", "t_srt", "t_swp", "t_sh2", "t_ror", "t_rev",
             "t_sh5")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    tasks: tuple[str, ...] = POSITIONS
    objectives: tuple[str, ...] = ("nll", "p")
    optimizers: tuple[str, ...] = ("adamw",)
    supervision: tuple[str, ...] = ("clean", "token")
    noise_rate: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 40
    batch_size: int = 16
    lr: float = 3e-4                 # AdamW; 2e-3 made every fine-tune worse than the base (README)
    sgd_lr: float = 0.05             # SGD (momentum 0.9); not tuned
    n_train: int = 256
    n_heldout: int = 200
    max_new_tokens: int = 10
    threads: int = 1
    device: str = "cpu"              # cpu | cuda (the GPU benchmark)

    def __post_init__(self):
        import probsft
        from probsft.validate.tasks import get_task
        from probsft.validate.train import OPTIMIZERS

        for f in ("tasks", "objectives", "optimizers", "supervision", "seeds"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        for t in self.tasks:
            get_task(t)
        for o in self.objectives:
            probsft.objective(o)
        if "nll" not in self.objectives or len(self.objectives) < 2:
            raise ConfigError("the paired comparison is against nll: objectives need nll and another")
        for o in self.optimizers:
            if o not in OPTIMIZERS:
                raise ConfigError(f"unknown optimizer {o!r}; choose from {', '.join(OPTIMIZERS)}")
        for s in self.supervision:
            if s not in pred.SUPERVISION:
                raise ConfigError(f"unknown supervision {s!r}; choose from {', '.join(pred.SUPERVISION)}")
        if len(self.seeds) < 2:
            raise ConfigError("the paired statistics need >= 2 seeds")
        if not 0 < self.noise_rate < 1:
            raise ConfigError(f"noise_rate must lie in (0, 1), got {self.noise_rate}")
        for f in ("steps", "batch_size", "n_train", "n_heldout", "max_new_tokens", "threads"):
            if getattr(self, f) < 1:
                raise ConfigError(f"experiment {f} must be >= 1")
        if not (0 < self.lr < 1 and 0 < self.sgd_lr < 10):
            raise ConfigError("experiment lr must lie in (0, 1) and sgd_lr in (0, 10)")

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        return config_from_dict(cls, d)


REDUCED = ExperimentConfig()
FULL = ExperimentConfig(
    objectives=("nll", "p", "alpha(0.1)", "alpha(0.5)", "alpha(2)", "alpha(10)", "nll@p>=0.2",
                "dft"),
    optimizers=("adamw", "sgd"), supervision=pred.SUPERVISION)


def _write_rows(path: Path, rows: list[dict], fields=FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def plausible_noise(records, model, tok, rate: float, seed: int, max_new_tokens: int):
    """(records, n_noisy): a fraction ``rate`` of records answered by a wrong sample of ``model``."""
    from probsft.validate.evaluate import generate

    records = [dict(r) for r in records]
    chosen = sorted(random.Random(seed).sample(range(len(records)), round(rate * len(records))))
    samples = generate(model, tok, [records[i] for i in chosen], max_new_tokens,
                       samples=PLAUSIBLE_TRIES, temperature=1.0, seed=seed, batch_size=64)
    n = 0
    for i, texts in zip(chosen, samples):
        true = records[i]["response"]
        wrong = next((t.strip().split("\n", 1)[0] for t in texts
                      if t.strip() and t.strip().split("\n", 1)[0] != true), None)
        if wrong is not None:
            records[i]["response"] = wrong
            n += 1
    return records, n


def supervised(kind, records, clean, model, tok, cfg: ExperimentConfig, seed: int):
    """(tokenised SFT examples of supervision ``kind`` for ``seed``, number of noisy records/tokens)."""
    from probsft.validate.data import add_label_noise, tokenize_sft

    if kind == "clean":
        return clean, 0
    if kind == "token":
        data = add_label_noise(clean, cfg.noise_rate, seed=seed, unit="token")
        return data, data.n_noisy
    if kind == "answer":
        recs = add_label_noise(records, cfg.noise_rate, seed=seed, unit="answer")
        return tokenize_sft(recs, tok, 256), sum(a != b for a, b in zip(recs, records))
    recs, n = plausible_noise(records, model, tok, cfg.noise_rate, seed, cfg.max_new_tokens)
    return tokenize_sft(recs, tok, 256), n


def _lr(cfg: ExperimentConfig, optimizer: str) -> float:
    return cfg.sgd_lr if optimizer == "sgd" else cfg.lr


def run_grid(cfg: ExperimentConfig, out: Path, model_path=None, progress: bool = True,
             deadline_s: float | None = None) -> Path:
    """Run (or resume) the grid; returns the results CSV path.

    Runs go by blocks of seeds: seeds 0 and 1 of each position in turn (the first paired CI), then
    every position for each further seed, so an interrupted grid holds complete paired cells. ``deadline_s``: stop starting new runs after
    this many seconds (the rest resumes later).
    """
    from tqdm.auto import tqdm

    import probsft
    from probsft.validate import backbone
    from probsft.validate.data import tokenize_sft
    from probsft.validate.evaluate import evaluate
    from probsft.validate.probe import probe
    from probsft.validate.tasks import read_prefix, write_task_data
    from probsft.validate.train import FinetuneConfig, finetune

    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_text = json.dumps(dataclasses.asdict(cfg), indent=1) + "\n"
    if (out / "config.json").exists() and (out / "config.json").read_text() != config_text:
        # results of another grid never mix with this one: set them aside (with the config that
        # made them, numbered so an earlier set is never overwritten), start over
        suffix = set_aside(out, ("results.csv", "probes.json", "config.json"))
        print(f"{out}: config changed; previous results moved to *{suffix}", flush=True)
    if not (out / "config.json").exists() or (out / "config.json").read_text() != config_text:
        atomic_write(out / "config.json", config_text)
    t0 = time.perf_counter()
    base, tok = backbone.load(model_path)
    base.to(cfg.device)
    paths = write_task_data(DATA / "validate", cfg.tasks, cfg.n_train, cfg.n_heldout)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path)
    key = lambda r: (r["position"], r["supervision"], r["optimizer"], r["objective"], int(r["seed"]))
    done = {key(r) for r in rows}
    probes = json.loads((out / "probes.json").read_text()) if (out / "probes.json").exists() else {}
    data = {}
    for t in cfg.tasks:
        recs = read_prefix(paths[t]["train"], cfg.n_train)
        data[t] = (recs, tokenize_sft(recs, tok, 256), read_prefix(paths[t]["heldout"], cfg.n_heldout))
        if t not in probes:
            stats = probe(base, tok, data[t][1], batch_size=64, placement=pred.PLACEMENT)
            probes[t] = {k: stats[k] for k in (
                "placement_mean_p", "mean_p", "answer_mean_p", "eos_mean_p", "placement", "region",
                "expected_winners", "frac_p_gt_0.55")}
            atomic_write(out / "probes.json", json.dumps(probes, indent=1) + "\n")
    runs = [(t, "clean", "none", "base", cfg.seeds[0]) for t in cfg.tasks]
    blocks = [cfg.seeds[:2]] + [(seed,) for seed in cfg.seeds[2:]]   # 2 seeds: the first CI
    runs += [(t, s, o, spec, seed) for block in blocks for t in cfg.tasks for seed in block
             for s in cfg.supervision for o in cfg.optimizers for spec in cfg.objectives]
    bar = tqdm(total=len(runs), initial=sum(r in done for r in runs), desc="validate grid",
               disable=not progress, dynamic_ncols=True)
    noisy_cache: dict = {}
    for run in runs:
        t, sup, opt, spec, seed = run
        if run in done:
            continue
        if deadline_s is not None and time.perf_counter() - t0 > deadline_s:
            break
        start = time.perf_counter()
        records, clean, held = data[t]
        model = copy.deepcopy(base)
        n_noisy = 0
        if spec != "base":
            if (t, sup, seed) not in noisy_cache:       # the same noise for every objective
                noisy_cache = {(t, sup, seed): supervised(sup, records, clean, base, tok, cfg, seed)}
            examples, n_noisy = noisy_cache[(t, sup, seed)]
            fc = FinetuneConfig(model="backbone", objective=spec, max_steps=cfg.steps,
                                lr=_lr(cfg, opt), optimizer=opt, batch_size=cfg.batch_size,
                                seed=seed, max_length=256, device=cfg.device, log_every=10 ** 6)
            finetune(fc, model=model, tokenizer=tok, progress=False, examples=examples)
        summary, per_item = evaluate(model, tok, held, max_new_tokens=cfg.max_new_tokens,
                                     batch_size=256)
        fit = probe(model, tok, clean, batch_size=256, placement=pred.PLACEMENT)   # after SFT
        pr = probes[t]
        rows.append({"position": t, "region": pr["region"],
                     "probe_answer_p": round(pr["answer_mean_p"], 4),
                     "probe_mean_p_all": round(pr["mean_p"], 4), "supervision": sup,
                     "optimizer": opt, "objective": spec,
                     "label": "base" if spec == "base" else probsft.objective(spec).label,
                     "seed": seed, "noisy": n_noisy,
                     "exact_match": round(summary["eval/exact_match"], 4),
                     "train_mean_p": round(fit["mean_p"], 4),
                     "train_answer_p": round(fit["answer_mean_p"], 4),
                     "train_eos_p": round(fit["eos_mean_p"] or 0.0, 4),
                     "items": "".join(str(int(r["exact_match"])) for r in per_item),
                     "seconds": round(time.perf_counter() - start, 2)})
        _write_rows(csv_path, rows)
        done.add(run)
        bar.update(1)
    bar.close()
    return csv_path


def _items(r: dict) -> np.ndarray:
    return (np.frombuffer(r["items"].encode(), dtype=np.uint8) - ord("0")).astype(np.int64)


def paired_cells(rows: list[dict], margin: float = pred.TIE_MARGIN) -> list[dict]:
    """One record per (position, supervision, optimizer, objective ≠ nll) with ≥ 2 paired seeds:
    the columns of ``paired.csv`` (Δ, CIs and MDE in exact-match points) plus region, prediction
    (for −p only; the theory's sign is stated for −p against NLL) and the mean training answer p."""
    from probsft.validate.stats import paired

    by = {}
    for r in rows:
        if r["objective"] != "base":
            by.setdefault((r["position"], r["supervision"], r["optimizer"], r["objective"]),
                          {})[int(r["seed"])] = r
    out = []
    for (pos, sup, opt, spec), runs in by.items():
        ref = by.get((pos, sup, opt, "nll"))
        if spec == "nll" or ref is None:
            continue
        seeds = sorted(set(runs) & set(ref))
        if len(seeds) < 2:
            continue
        a = np.stack([_items(runs[s]) for s in seeds])
        b = np.stack([_items(ref[s]) for s in seeds])
        st = paired(a, b, margin)
        region = runs[seeds[0]]["region"]
        prediction = pred.predict(region, sup) if spec == "p" else ""
        verdict = pred.verdict(prediction, (st["ci_low"], st["ci_high"]),
                               (st["tost_low"], st["tost_high"]), margin) if prediction else ""
        pts = lambda x: round(100 * x, 2)
        out.append({"position": pos, "probe_answer_p": float(runs[seeds[0]]["probe_answer_p"]),
                    "supervision": sup, "optimizer": opt, "objective": spec,
                    "n_seeds": st["n_seeds"], "delta": pts(st["delta"]),
                    "ci_low": pts(st["ci_low"]), "ci_high": pts(st["ci_high"]),
                    "tost_low": pts(st["tost_low"]), "tost_high": pts(st["tost_high"]),
                    "mde": pts(st["mde"]), "verdict": verdict, "region": region,
                    "prediction": prediction, "per_seed": [
                        pts(float((_items(runs[s]) - _items(ref[s])).mean())) for s in seeds],
                    "train_answer_p": round(float(np.mean(
                        [float(runs[s]["train_answer_p"]) for s in seeds])), 4),
                    "nll_train_answer_p": round(float(np.mean(
                        [float(ref[s]["train_answer_p"]) for s in seeds])), 4)})
    out.sort(key=lambda c: (c["supervision"], c["optimizer"], c["objective"], c["probe_answer_p"]))
    return out


def analyse(rows: list[dict], margin: float = pred.TIE_MARGIN) -> dict:
    """Everything the report and figure need, from the saved rows: paired cells, verdict counts,
    the crossover of −p − NLL per (supervision, optimizer), fit-follows-winner and the α trend."""
    from probsft.validate.stats import crossover

    cells = paired_cells(rows, margin)
    verdicts = [c for c in cells if c["verdict"]]
    counts = {v: sum(c["verdict"] == v for c in verdicts) for v in pred.VERDICTS}
    cross = {}
    for sup, opt in dict.fromkeys((c["supervision"], c["optimizer"]) for c in verdicts):
        cs = [c for c in verdicts if (c["supervision"], c["optimizer"]) == (sup, opt)]
        S = min(len(c["per_seed"]) for c in cs)
        if len(cs) >= 2:
            cross[f"{sup}/{opt}"] = crossover([c["probe_answer_p"] for c in cs],
                                              [c["per_seed"][:S] for c in cs])
    base = {r["position"]: float(r["exact_match"]) for r in rows if r["objective"] == "base"}
    fit = [{"position": c["position"], "probe_answer_p": c["probe_answer_p"],
            "supervision": c["supervision"], "optimizer": c["optimizer"],
            "train_p_nll": c["nll_train_answer_p"], "train_p_p": c["train_answer_p"],
            "delta": c["delta"], "winner": "p" if c["delta"] > 0 else "nll" if c["delta"] < 0
            else "none", "fit_winner": "p" if c["train_answer_p"] > c["nll_train_answer_p"]
            else "nll"} for c in verdicts]
    alpha = best_alpha(rows)
    return {"cells": cells, "counts": counts, "crossover": cross, "base_exact_match": base,
            "fit": fit, "alpha": alpha}


def best_alpha(rows: list[dict]) -> list[dict]:
    """Per (position, supervision, optimizer): the α of alpha(α) with the highest mean exact match
    (empty unless the grid ran alpha objectives, i.e. the full grid)."""
    groups: dict = {}
    for r in rows:
        spec = r["objective"]
        if spec.startswith("alpha("):
            a = float(spec[len("alpha("):-1])
            groups.setdefault((r["position"], r["supervision"], r["optimizer"]), {}).setdefault(
                a, []).append(float(r["exact_match"]))
    out = []
    for (pos, sup, opt), by_a in groups.items():
        p = next(float(r["probe_answer_p"]) for r in rows if r["position"] == pos)
        best = max(by_a, key=lambda a: np.mean(by_a[a]))
        out.append({"position": pos, "probe_answer_p": p, "supervision": sup, "optimizer": opt,
                    "best_alpha": best})
    return sorted(out, key=lambda x: (x["supervision"], x["optimizer"], x["probe_answer_p"]))


def write_analysis(rows: list[dict], out: Path) -> dict:
    """Save paired.csv (exactly :data:`PAIRED_FIELDS`) and verdicts.json; returns the analysis."""
    result = analyse(rows)
    _write_rows(out / "paired.csv", [{k: c[k] for k in PAIRED_FIELDS} for c in result["cells"]],
                PAIRED_FIELDS)
    atomic_write(out / "verdicts.json", json.dumps(result, indent=1) + "\n")
    return result


def folder(full: bool) -> str:
    """Results folder name: the two grids live apart, so running one never sets the other aside."""
    return "validate_full" if full else "validate"
