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
                "dft", "deft", "alpha(auto)"),
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


def default_workers() -> int:
    """Grid processes by default: the CPUs this process may use, at most 8."""
    from probsft.validate.train import usable_cpus

    return min(8, usable_cpus())


AXES = ("tasks", "objectives", "optimizers", "supervision", "seeds")


def run_settings(config: dict) -> dict:
    """What defines one run's result in a saved grid config: everything but the grid's axes
    (:data:`AXES`) and the thread count, including the backbone's fingerprint."""
    return {k: v for k, v in config.items() if k not in AXES and k != "threads"}


def model_fingerprint(model_path=None) -> str:
    """sha256 of the backbone's weights file (the shipped backbone by default): a grid resumed on
    another backbone starts over."""
    from probsft.files import sha256_file
    from probsft.validate import backbone

    folder = Path(model_path) if model_path else backbone.SHIPPED
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise ConfigError(f"no weights (*.safetensors or *.bin) in {folder}")
    return sha256_file(files[0]) if len(files) == 1 else "+".join(sha256_file(f) for f in files)


class _Grid:
    """What every run of a grid needs, loaded once per process: the base model, the tokenizer, each
    position's records (train, tokenised train, held out) and the probes."""

    def __init__(self, cfg: ExperimentConfig, model_path, probes: dict | None = None):
        from probsft.validate import backbone
        from probsft.validate.data import tokenize_sft
        from probsft.validate.tasks import read_prefix, write_task_data

        torch.set_num_threads(cfg.threads)
        torch.set_flush_denormal(True)        # see probsft.validate.backbone.build
        self.cfg = cfg
        self.base, self.tok = backbone.load(model_path)
        self.base.to(cfg.device)
        paths = write_task_data(DATA / "validate", cfg.tasks, cfg.n_train, cfg.n_heldout)
        self.data = {}
        for t in cfg.tasks:
            recs = read_prefix(paths[t]["train"], cfg.n_train)
            self.data[t] = (recs, tokenize_sft(recs, self.tok, 256),
                            read_prefix(paths[t]["heldout"], cfg.n_heldout))
        self.probes = dict(probes or {})

    def probe_positions(self, save) -> None:
        """Probe every position not yet probed (the base model on its SFT-train items); ``save``
        is called with the probes after each."""
        from probsft.validate.probe import probe

        for t in self.cfg.tasks:
            if t not in self.probes:
                stats = probe(self.base, self.tok, self.data[t][1], batch_size=64,
                              placement=pred.PLACEMENT)
                self.probes[t] = {k: stats[k] for k in (
                    "placement_mean_p", "mean_p", "answer_mean_p", "eos_mean_p", "placement",
                    "region", "expected_winners", "frac_p_gt_0.55")}
                save(self.probes)

    def runs(self, group) -> list[dict]:
        """The rows of one group (position, supervision, seed, [(optimizer, objective), …]): the
        supervision noise is drawn once and shared by every objective (the paired design)."""
        import probsft
        from probsft.validate.evaluate import evaluate
        from probsft.validate.probe import probe
        from probsft.validate.train import FinetuneConfig, finetune

        t, sup, seed, todo = group
        cfg, (records, clean, held), pr = self.cfg, self.data[t], self.probes[t]
        noisy = None
        rows = []
        for opt, spec in todo:
            start = time.perf_counter()
            model = copy.deepcopy(self.base)
            n_noisy = 0
            if spec != "base":
                if noisy is None:
                    noisy = supervised(sup, records, clean, self.base, self.tok, cfg, seed)
                examples, n_noisy = noisy
                fc = FinetuneConfig(model="backbone", objective=spec, max_steps=cfg.steps,
                                    lr=_lr(cfg, opt), optimizer=opt, batch_size=cfg.batch_size,
                                    seed=seed, max_length=256, device=cfg.device, log_every=10 ** 6)
                finetune(fc, model=model, tokenizer=self.tok, progress=False, examples=examples)
            summary, per_item = evaluate(model, self.tok, held, max_new_tokens=cfg.max_new_tokens,
                                         batch_size=256)
            fit = probe(model, self.tok, clean, batch_size=256, placement=pred.PLACEMENT)
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
        return rows


_WORKER: _Grid | None = None


def _worker_init(cfg, model_path, probes) -> None:
    global _WORKER
    _WORKER = _Grid(cfg, model_path, probes)


def _worker_runs(group) -> list[dict]:
    return _WORKER.runs(group)


def n_runs(cfg: ExperimentConfig) -> int:
    """Runs in the whole grid of ``cfg``: a base evaluation per position, then one run per
    position, seed, supervision kind, optimizer and objective."""
    return len(cfg.tasks) * (1 + len(cfg.seeds) * len(cfg.supervision) * len(cfg.optimizers)
                             * len(cfg.objectives))


def plan(cfg: ExperimentConfig, done=frozenset()) -> list[tuple]:
    """The grid's groups not yet done, in run order: (position, supervision, seed, [(optimizer,
    objective), …]). The base evaluations come first, then seeds 0 and 1 of each position in turn
    (the first paired CI), then every position for each further seed, so an interrupted grid holds
    complete paired cells. A group's runs share one draw of the supervision noise."""
    groups = [(t, "clean", cfg.seeds[0], [("none", "base")]) for t in cfg.tasks]
    blocks = [cfg.seeds[:2]] + [(seed,) for seed in cfg.seeds[2:]]
    groups += [(t, s, seed, [(o, spec) for o in cfg.optimizers for spec in cfg.objectives])
               for block in blocks for t in cfg.tasks for seed in block for s in cfg.supervision]
    out = []
    for t, s, seed, todo in groups:
        todo = [(o, spec) for o, spec in todo if (t, s, o, spec, seed) not in done]
        if todo:
            out.append((t, s, seed, todo))
    return out


def run_grid(cfg: ExperimentConfig, out: Path, model_path=None, progress: bool = True,
             deadline_s: float | None = None, workers: int = 1) -> Path:
    """Run (or resume) the grid; returns the results CSV path.

    ``workers`` > 1 runs the groups of :func:`plan` in that many processes (each with
    ``cfg.threads`` torch threads); a run is a pure function of its seed, so the rows do not depend
    on the number of workers. This process alone writes ``results.csv``, after every group.
    ``deadline_s``: stop starting new groups after this many seconds (the rest resumes later).
    """
    import concurrent.futures as cf
    import multiprocessing

    from tqdm.auto import tqdm

    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
    config = {**dataclasses.asdict(cfg), "model_sha256": model_fingerprint(model_path)}
    if saved is not None and run_settings(saved) != run_settings(config):
        # results of other runs never mix with these: set them aside (with the config that made
        # them, numbered so an earlier set is never overwritten), start over. A grid with other
        # axes (positions, objectives, optimizers, supervision, seeds) keeps its finished runs.
        suffix = set_aside(out, ("results.csv", "probes.json", "config.json"))
        print(f"{out}: run settings or backbone changed; previous results moved to *{suffix}",
              flush=True)
    atomic_write(out / "config.json", json.dumps(config, indent=1) + "\n")
    t0 = time.perf_counter()
    probes = json.loads((out / "probes.json").read_text()) if (out / "probes.json").exists() else {}
    grid = _Grid(cfg, model_path, probes)
    grid.probe_positions(lambda pr: atomic_write(out / "probes.json", json.dumps(pr, indent=1) + "\n"))
    csv_path = out / "results.csv"
    rows = read_rows(csv_path)
    key = lambda r: (r["position"], r["supervision"], r["optimizer"], r["objective"], int(r["seed"]))
    groups = plan(cfg, {key(r) for r in rows})
    total = n_runs(cfg)
    bar = tqdm(total=total, initial=total - sum(len(g[3]) for g in groups), desc="validate grid",
               disable=not progress, dynamic_ncols=True)
    late = lambda: deadline_s is not None and time.perf_counter() - t0 > deadline_s

    def finished(new):
        rows.extend(new)
        _write_rows(csv_path, rows)
        bar.update(len(new))

    if workers == 1:
        for group in groups:
            if late():
                break
            finished(grid.runs(group))
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(cfg, model_path, grid.probes)) as pool:
            pending, queue = set(), iter(groups)
            while True:
                while len(pending) < 2 * workers and not late():
                    group = next(queue, None)
                    if group is None:
                        break
                    pending.add(pool.submit(_worker_runs, group))
                if not pending:
                    break
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    finished(fut.result())
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
    for (sup, opt), cs in pred.by_kind(verdicts).items():
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
    by_kind = {f"{sup}/{opt}": {v: sum(c["verdict"] == v for c in cs) for v in pred.VERDICTS}
               for (sup, opt), cs in pred.by_kind(verdicts).items()}
    return {"cells": cells, "counts": counts, "counts_by_kind": by_kind, "crossover": cross,
            "base_exact_match": base,
            "fit": fit, "alpha": alpha, "alpha_trend": alpha_trend(alpha),
            "adaptive": adaptive_vs_fixed(rows, margin)}


def alpha_of(spec: str) -> float | None:
    """α of an objective of the (1 − p^α)/α family with a fixed α: NLL is its α → 0 limit, −p its
    α = 1; None for every other objective (thresholds, DFT, the adaptive ones)."""
    import probsft

    obj = probsft.objective(spec)
    if obj.interval is not None or obj.needs_probe:
        return None
    if obj.family in ("nll", "p"):
        return 0.0 if obj.family == "nll" else 1.0
    if obj.family == "alpha":
        return float(obj.spec[len("alpha("):-1])
    return None


def best_alpha(rows: list[dict]) -> list[dict]:
    """Per (position, supervision, optimizer): the α of the (1 − p^α)/α family (NLL α = 0, −p
    α = 1, alpha(α)) with the highest mean exact match, when the grid ran ≥ 3 values of α; cells
    where the best value is shared by several α (e.g. all at the floor) are marked ``tied``."""
    groups: dict = {}
    for r in rows:
        a = None if r["objective"] == "base" else alpha_of(r["objective"])
        if a is not None:
            groups.setdefault((r["position"], r["supervision"], r["optimizer"]), {}).setdefault(
                a, []).append(float(r["exact_match"]))
    out = []
    for (pos, sup, opt), by_a in groups.items():
        if len(by_a) < 3:
            continue
        p = next(float(r["probe_answer_p"]) for r in rows if r["position"] == pos)
        means = {a: float(np.mean(v)) for a, v in by_a.items()}
        best = max(means, key=means.get)
        out.append({"position": pos, "probe_answer_p": p, "supervision": sup, "optimizer": opt,
                    "best_alpha": best, "tied": sum(m == means[best] for m in means.values()) > 1,
                    "means": {f"{a:g}": round(100 * m, 2) for a, m in sorted(means.items())}})
    return sorted(out, key=lambda x: (x["supervision"], x["optimizer"], x["probe_answer_p"]))


def alpha_trend(best: list[dict], perms: int = 10000, seed: int = 0) -> dict:
    """Per supervision/optimizer: Spearman's ρ between probe p and the best α over the untied
    positions, with a one-sided permutation p-value for the prediction that α rises with p."""
    from scipy.stats import rankdata, spearmanr

    out = {}
    for (sup, opt), group in pred.by_kind(best).items():
        bs = [b for b in group if not b["tied"]]
        x = np.array([b["probe_answer_p"] for b in bs])
        y = np.array([b["best_alpha"] for b in bs])
        if len(bs) < 3 or len(set(y)) < 2:
            out[f"{sup}/{opt}"] = {"n": len(bs), "rho": None, "p_value": None}
            continue
        rho = float(spearmanr(x, y).statistic)
        # the null: ρ of x with permuted y, i.e. the Pearson correlation of x's ranks with y's
        # ranks permuted (ties keep their average ranks), all permutations in one product
        rng = np.random.default_rng(seed)
        order = np.stack([rng.permutation(len(y)) for _ in range(perms)])
        rx, ry = rankdata(x), rankdata(y)[order]
        rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
        null = ry @ rx / np.sqrt((ry * ry).sum(axis=1) * (rx @ rx))
        out[f"{sup}/{opt}"] = {"n": len(bs), "rho": round(rho, 3),
                               "p_value": float((1 + np.sum(null >= rho - 1e-12)) / (1 + perms))}
    return out


def is_adaptive(spec: str) -> bool:
    """An objective that adapts to the model: it reads per-token statistics of the model's own
    distribution (DEFT's Σq²) or a parameter fixed from the probe (alpha(auto))."""
    import probsft

    obj = probsft.objective(spec)
    return bool(obj.token_stats or obj.base.probe_params)


def adaptive_vs_fixed(rows: list[dict], margin: float = pred.TIE_MARGIN) -> list[dict]:
    """Per (position, supervision, optimizer) and adaptive objective (:func:`is_adaptive`) in the
    grid: the paired difference against the best *fixed* objective of the cell (the highest mean
    exact match among the others, NLL included; chosen after the fact, so this favours the fixed
    side). ``status``: ``not worse`` when the one-sided 95% bound (the TOST interval's low end)
    lies above −margin, ``worse`` when the 95% CI lies below 0, else ``inconclusive``."""
    from probsft.validate.stats import paired

    by: dict = {}
    for r in rows:
        if r["objective"] != "base":
            by.setdefault((r["position"], r["supervision"], r["optimizer"]), {}).setdefault(
                r["objective"], {})[int(r["seed"])] = r
    out = []
    for (pos, sup, opt), objs in sorted(by.items()):
        fixed = {k: v for k, v in objs.items() if not is_adaptive(k)}
        for spec in (a for a in objs if is_adaptive(a)):
            if not fixed:
                continue
            best = max(fixed, key=lambda k: np.mean([float(r["exact_match"])
                                                    for r in fixed[k].values()]))
            seeds = sorted(set(objs[spec]) & set(fixed[best]))
            if len(seeds) < 2:
                continue
            st = paired(np.stack([_items(objs[spec][s]) for s in seeds]),
                        np.stack([_items(fixed[best][s]) for s in seeds]), margin)
            status = ("not worse" if st["tost_low"] > -margin else
                      "worse" if st["ci_high"] < 0 else "inconclusive")
            out.append({"position": pos, "probe_answer_p": float(objs[spec][seeds[0]]["probe_answer_p"]),
                        "supervision": sup, "optimizer": opt, "objective": spec,
                        "best_fixed": best, "delta": round(100 * st["delta"], 2),
                        "ci_low": round(100 * st["ci_low"], 2),
                        "ci_high": round(100 * st["ci_high"], 2),
                        "tost_low": round(100 * st["tost_low"], 2), "status": status})
    return sorted(out, key=lambda c: (c["objective"], c["supervision"], c["optimizer"],
                                      c["probe_answer_p"]))


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
