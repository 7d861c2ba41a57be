"""The capability-continuum experiment on a real transformer: predicted vs measured orderings.

For each task of probsft.validate.tasks: probe the base model (mean target p, paper Eq. 5 -> its
continuum region and the theory's prediction), fine-tune it with every objective of
``ExperimentConfig.objectives`` (specs from the registry only) for each seed, with clean and with
token-noisy supervision (data.add_label_noise), and evaluate held-out exact match / Jaro-Winkler and
the mean training-token likelihood after SFT (paper Fig. 6 right).

Prediction (notes §2.4, §6.4-6.5): the contrast is the prior-leaning −p against NLL.
  * model-weak: NLL > −p, clean or noisy (uniform prior: NLL wins for any E < (V−1)/V);
  * model-strong, noisy labels: −p > NLL (the noisy-label term B > 0 dominates);
  * model-strong, clean labels: NLL ≥ −p in the linearised theory (the paper's math gain is
    attributed to noisy supervision), so a tie also agrees;
  * intermediate: no winner (a tie within the tolerance).
A measured difference counts as a tie when |Δ| ≤ max(min_gap, 2·SE) (SE of the difference of the
seed means). Verdicts are reported as measured; the grid is not tuned to agree.

Results go to ``<out>/results.csv`` (one row per cell, rewritten atomically after every cell, so an
interrupted grid resumes by skipping finished cells), ``probes.json`` and ``config.json``; the
table, verdicts and figure are drawn from those files.

    probsft validate [--full] [--out DIR] [--model PATH] [--tasks spell_backward figlet]
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import io
import time
from pathlib import Path

import numpy as np
import torch

from probsft.config import config_from_dict
from probsft.errors import ConfigError
from probsft.files import atomic_write, set_aside
from probsft.paths import DATA

FIELDS = ["task", "role", "region", "probe_mean_p", "probe_mean_p_all", "noise", "objective", "label", "seed",
          "exact_match", "jaro_winkler", "train_mean_p", "train_answer_p", "train_eos_p", "seconds"]


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    tasks: tuple[str, ...] = ("spell_backward", "letter_jumble", "figlet")
    objectives: tuple[str, ...] = ("nll", "p", "alpha(10)", "nll@p>=0.2", "alpha(0.5)")
    seeds: tuple[int, ...] = (0, 1, 2)
    noise: tuple[float, ...] = (0.0, 0.2)
    steps: int = 40
    batch_size: int = 16
    lr: float = 3e-4                 # 2e-3 made every fine-tune worse than the base model (README)
    n_train: int = 256
    n_heldout: int = 48
    max_new_tokens: int = 8
    min_gap: float = 0.02            # smallest metric difference that is not a tie
    threads: int = 1
    device: str = "cpu"              # cpu | cuda (the GPU benchmark)

    def __post_init__(self):
        import probsft
        from probsft.validate.tasks import get_task

        for f in ("tasks", "objectives", "seeds", "noise"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        for t in self.tasks:
            get_task(t)
        for o in self.objectives:
            probsft.objective(o)
        if "nll" not in self.objectives or "p" not in self.objectives:
            raise ConfigError("the verdict contrasts nll with p: both must be in objectives")
        if not self.seeds or any(not 0 <= e < 1 for e in self.noise):
            raise ConfigError("need >= 1 seed and noise rates in [0, 1)")
        for f in ("steps", "batch_size", "n_train", "n_heldout", "max_new_tokens", "threads"):
            if getattr(self, f) < 1:
                raise ConfigError(f"experiment {f} must be >= 1")
        if not 0 < self.lr < 1:
            raise ConfigError(f"experiment lr must lie in (0, 1), got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        return config_from_dict(cls, d)


# The continuum position of a task is its answer tokens' mean p: the end-of-response token is a
# format token the backbone never saw (p ≈ 0) and a fifth to a half of these short responses
# (probsft.validate.probe). Both numbers are saved in probes.json and results.csv.
PLACEMENT = "answer"
REDUCED = ExperimentConfig()
# letter_jumble has ~570 distinct training words: the full grid takes 512 of them
FULL = ExperimentConfig(seeds=(0, 1, 2, 3, 4), steps=150, n_train=512, n_heldout=128)


def predict(region: str, noise: float) -> str:
    """The theory's expected sign of −p minus NLL: 'p' (−p wins), 'nll', 'nll_or_tie' or 'tie'."""
    table = {"model-weak": "nll", "model-intermediate": "tie",
             "model-strong": "p" if noise > 0 else "nll_or_tie"}
    return table[region]


def measured(p_vals, nll_vals, min_gap: float) -> tuple[str, float, float]:
    """('p' | 'nll' | 'tie', Δ = mean(−p) − mean(NLL), tolerance) from per-seed metric values."""
    a, b = np.asarray(p_vals, float), np.asarray(nll_vals, float)
    diff = a.mean() - b.mean()
    se = math.sqrt((a.var(ddof=1) / len(a) if len(a) > 1 else 0.0)
                   + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0))
    tol = max(min_gap, 2 * se)
    return ("tie" if abs(diff) <= tol else "p" if diff > 0 else "nll"), float(diff), float(tol)


def agrees(prediction: str, outcome: str) -> bool:
    return outcome in {"nll_or_tie": ("nll", "tie")}.get(prediction, (prediction,))


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_grid(cfg: ExperimentConfig, out: Path, model_path=None, progress: bool = True,
             deadline_s: float | None = None) -> Path:
    """Run (or resume) the grid; returns the results CSV path.

    ``deadline_s``: stop starting new cells after this many seconds (the rest resumes later).
    """
    from tqdm.auto import tqdm

    import probsft
    from probsft.validate import backbone
    from probsft.validate.data import add_label_noise, tokenize_sft
    from probsft.validate.evaluate import evaluate
    from probsft.validate.probe import probe
    from probsft.validate.tasks import get_task, read_prefix, write_task_data
    from probsft.validate.train import FinetuneConfig, finetune

    torch.set_num_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_text = json.dumps(dataclasses.asdict(cfg), indent=1)
    if (out / "config.json").exists() and (out / "config.json").read_text() != config_text:
        # results of another grid never mix with this one: set them aside (with the config that
        # made them, numbered so an earlier set is never overwritten), start over
        suffix = set_aside(out, ("results.csv", "probes.json", "config.json"))
        print(f"{out}: config changed; previous results moved to *{suffix}", flush=True)
    atomic_write(out / "config.json", config_text)
    t0 = time.perf_counter()
    base, tok = backbone.load(model_path)
    base.to(cfg.device)
    paths = write_task_data(DATA / "validate", cfg.tasks, cfg.n_train, cfg.n_heldout)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path)
    done = {(r["task"], float(r["noise"]), r["objective"], int(r["seed"])) for r in rows}
    probes = json.loads((out / "probes.json").read_text()) if (out / "probes.json").exists() else {}
    cells = [(t, e, o, s) for t in cfg.tasks for e in cfg.noise for o in ("base",) + cfg.objectives
             for s in (cfg.seeds[:1] if o == "base" else cfg.seeds)]
    bar = tqdm(total=len(cells), initial=sum(c in done for c in cells), desc="validate grid",
               disable=not progress)
    for task_name in cfg.tasks:
        task = get_task(task_name)
        train_recs = read_prefix(paths[task_name]["train"], cfg.n_train)
        held = read_prefix(paths[task_name]["heldout"], cfg.n_heldout)
        clean = tokenize_sft(train_recs, tok, 256)
        if task_name not in probes:
            stats = probe(base, tok, clean, batch_size=64, placement=PLACEMENT)
            probes[task_name] = {k: stats[k] for k in (
                "placement_mean_p", "mean_p", "answer_mean_p", "eos_mean_p", "placement", "region",
                "expected_winners", "frac_p_gt_0.55")}
            atomic_write(out / "probes.json", json.dumps(probes, indent=1))
        pr = probes[task_name]
        for cell in cells:
            t, noise, spec, seed = cell
            if t != task_name or cell in done:
                continue
            if deadline_s is not None and time.perf_counter() - t0 > deadline_s:
                bar.close()
                return csv_path
            start = time.perf_counter()
            model = copy.deepcopy(base)
            if spec != "base":
                data = add_label_noise(clean, noise, seed=seed) if noise > 0 else clean
                fc = FinetuneConfig(model="backbone", objective=spec, max_steps=cfg.steps,
                                    lr=cfg.lr, batch_size=cfg.batch_size, seed=seed,
                                    max_length=256, device=cfg.device, log_every=10 ** 6)
                finetune(fc, model=model, tokenizer=tok, progress=False, examples=data)
            summary, _ = evaluate(model, tok, held, max_new_tokens=cfg.max_new_tokens,
                                  batch_size=64)
            fit = probe(model, tok, clean, batch_size=64, placement=PLACEMENT)  # after SFT
            rows.append({"task": t, "role": task.role, "region": pr["region"],
                         "probe_mean_p": round(pr["placement_mean_p"], 4),
                         "probe_mean_p_all": round(pr["mean_p"], 4), "noise": noise, "objective": spec,
                         "label": "base" if spec == "base" else probsft.objective(spec).label,
                         "seed": seed, "exact_match": round(summary["eval/exact_match"], 4),
                         "jaro_winkler": round(summary["eval/jaro_winkler"], 4),
                         "train_mean_p": round(fit["mean_p"], 4),
                         "train_answer_p": round(fit["answer_mean_p"], 4),
                         "train_eos_p": round(fit["eos_mean_p"] or 0.0, 4),
                         "seconds": round(time.perf_counter() - start, 2)})
            _write_rows(csv_path, rows)
            done.add(cell)
            bar.update(1)
    bar.close()
    return csv_path


def metric_of(task: str) -> str:
    from probsft.validate.tasks import get_task

    return get_task(task).metric


def summarize(rows: list[dict], min_gap: float = 0.02) -> tuple[list[str], list[dict]]:
    """(markdown table lines, verdict records) from result rows (pure: no model needed)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["task"], float(r["noise"])), []).append(r)
    lines = ["| task (role, probe p) | noise | objective | exact match | Jaro–Winkler | train mean p "
             "| train answer p | train eos p |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for (task, noise), rs in groups.items():
        by_obj: dict = {}
        for r in rs:
            by_obj.setdefault(r["objective"], []).append(r)
        head = f"{task} ({rs[0]['region']}, {float(rs[0]['probe_mean_p']):.2f})"
        for spec, xs in by_obj.items():
            cells = []
            for key in ("exact_match", "jaro_winkler", "train_mean_p", "train_answer_p",
                        "train_eos_p"):
                v = np.array([float(x[key]) for x in xs])
                cells.append(f"{100 * v.mean():.1f} ± {100 * v.std():.1f}")
            lines.append(f"| {head} | {noise:g} | {xs[0]['label']} | " + " | ".join(cells) + " |")
        if "p" not in by_obj or "nll" not in by_obj:
            continue
        key = metric_of(task)
        outcome, diff, tol = measured([float(x[key]) for x in by_obj["p"]],
                                      [float(x[key]) for x in by_obj["nll"]], min_gap)
        pred = predict(rs[0]["region"], noise)
        order = sorted((o for o in by_obj if o != "base"),
                       key=lambda o: -np.mean([float(x[key]) for x in by_obj[o]]))
        verdicts.append({"task": task, "noise": noise, "region": rs[0]["region"],
                         "probe_mean_p": float(rs[0]["probe_mean_p"]), "metric": key,
                         "prediction": pred, "measured": outcome, "delta_p_minus_nll": diff,
                         "tolerance": tol, "agrees": agrees(pred, outcome),
                         "ordering": " > ".join(by_obj[o][0]["label"] for o in order)})
    return lines, verdicts


def folder(full: bool) -> str:
    """Results folder name: the two grids live apart, so running one never sets the other aside."""
    return "validate_full" if full else "validate"
