"""The capability continuum as a dose–response curve on a real transformer (paired design).

Positions are the dial's tasks (probsft.validate.tasks.DIAL): one format, distinct character
transformations the shipped backbone saw at graded doses, so the probe places each at its own base
answer-token mean p (probsft.continuum.predictions.PLACEMENT). For each position, seed, supervision
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

Predictions and the verdict rule live in probsft.continuum.predictions; this module only runs. Results: ``<out>/results.csv`` (one row per run, with the held-out items' exact match as a
0/1 string, rewritten atomically after every run, so an interrupted grid resumes), ``probes.json``,
``config.json``; probsft.continuum.analysis turns the rows into the paired cells, verdicts,
crossover, fit-follows-winner and α trend (pure: no model needed).

    probsft validate [--full] [--out DIR] [--model PATH]
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import random
import time
from pathlib import Path

import torch

from probsft.config import config_from_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write_csv, atomic_write_json, rounded, set_aside
from probsft.paths import DATA
from probsft.continuum import predictions as pred

FIELDS = ["position", "region", "probe_answer_p", "probe_mean_p_all", "supervision", "optimizer",
          "objective", "label", "seed", "noisy", "exact_match", "train_mean_p", "train_answer_p",
          "train_eos_p", "items", "seconds"]
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
# The SFT ecosystem's objectives (theory/ecosystem.py: EAFT as LLaMA-Factory and axolotl ship it,
# CHORD-phi, ASFT with its default anchor 0.1), candidates of the grids from now on; the registered
# full grids ran before they existed, so they are measured in a grid of their own beside NLL, -p and
# DFT (grids.GRIDS["ecosystem"]).
ECOSYSTEM = ("eaft", "eaft(1,20,1)", "chord", "asft(0.1)")
ECOSYSTEM_GRID = dataclasses.replace(REDUCED, objectives=("nll", "p", "dft", *ECOSYSTEM))


def write_rows(path: Path, rows: list[dict], fields=FIELDS) -> None:
    """``rows`` as a CSV of ``fields`` (floats to probsft.files.SIGNIFICANT digits), atomically."""
    atomic_write_csv(path, rows, fields)


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
                self.probes[t] = rounded({k: stats[k] for k in (        # as probes.json holds
                    "placement_mean_p", "mean_p", "answer_mean_p", "eos_mean_p", "placement",
                    "region", "expected_winners", "frac_p_gt_0.55")})
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
    atomic_write_json(out / "config.json", config, indent=1, digits=None)    # a config: exact
    t0 = time.perf_counter()
    probes = json.loads((out / "probes.json").read_text()) if (out / "probes.json").exists() else {}
    grid = _Grid(cfg, model_path, probes)
    grid.probe_positions(lambda pr: atomic_write_json(out / "probes.json", pr, indent=1))
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
        write_rows(csv_path, rows)
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
