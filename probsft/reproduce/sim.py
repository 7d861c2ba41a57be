"""The simulator's step of the main job: run every registered experiment, draw, report the verdicts.

    probsft reproduce --only sim            # -> results/sim/<experiment>/..., results/sim/*.png
    probsft reproduce --only sim --quick    # smaller grids (about two minutes) -> <out>/sim_quick
    from probsft.reproduce.sim import reproduce; reproduce(Path("results"), full=False)

For each entry of ``probsft.sim.experiments.EXPERIMENTS``: run or resume it (results saved first),
draw its figures from the saved files (``probsft.figures.<module>.draw``) and format its verdicts
(computed by the library from the saved files) as markdown. Nothing here decides a verdict; nothing
written here carries a time, so a rerun on finished results reproduces the files byte for byte.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np

from probsft.sim import analysis
from probsft.sim.experiments import EXPERIMENTS, Experiment, run, variants
from probsft.sim.sweep import at_step, read_rows

INTRO = [
    "Synthetic capability continuum. Each experiment is one entry of "
    "`probsft.sim.experiments.EXPERIMENTS` (configs, figures, verdicts); results: "
    "`sim/<experiment>/[<variant>/]{config.json, results.csv}`; figures are pure functions of "
    "those files (`figures/sim_*.py`).", "",
    "How to read: *theory mode* is the paper's linearised setting (identity Gram, gradient flow on "
    "each context's logits; metric rᵀq); *learning mode* trains one softmax regression shared by "
    "all contexts and evaluates on held-out contexts (metric: accuracy against the true token), "
    "with SGD and with Adam. Every verdict is a paired comparison over seeds (same contexts, "
    "teacher and noise for both objectives) with its 95% interval: confirmed / refuted / "
    "equivalent (inside ±0.01) / inconclusive. **prior** = the preset's prior contribution, "
    "clean-label NLL accuracy at prior strength 1 minus at 0; below 0.1 the verdict reads "
    "\"prior does not matter here\".", ""]


def _cell(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def verdict_table(verdicts) -> list[str]:
    lines = ["| claim | run | setting | measured | prior | verdict |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        outcome = v.outcome if v.outcome in ("inconclusive", "equivalent") else f"**{v.outcome}**"
        lines.append(f"| {v.claim} | `{v.where}` | {v.setting or '–'} | {v.measured} | "
                     f"{_cell(v.prior_contribution)} | {outcome} |")
    return lines


def seed_mean_table(rows, metric: str, E: float) -> list[str]:
    """Prior strength, base mean p (Eq. 5), p > 0.55 (Table 6), base model, then each objective."""
    rows = [r for r in rows if r["noise_rate"] == E]
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    labels = {r["objective"]: r["label"] for r in rows}
    means = analysis.seed_mean(rows, metric)
    stat = {k: analysis.seed_mean(rows, k, by=("prior_strength",))
            for k in ("base/mean_p", "base/frac_p055", metric.replace("eval/", "base/eval_"))}
    out = [f"| prior s | base p (Eq. 5) | p>0.55 (Tab. 6) | base model | "
           + " | ".join(labels[o] for o in objectives) + " |",
           "|---" * (len(objectives) + 4) + "|"]
    for s in sorted({r["prior_strength"] for r in rows}):
        vals = [means[(o, s, E)][0] for o in objectives]
        best = int(np.nanargmax(vals))
        cells = [f"**{v:.3f}**" if i == best else f"{v:.3f}" for i, v in enumerate(vals)]
        base = [stat[k][(s,)][0] for k in stat]
        out.append(f"| {s:g} | {base[0]:.2f} | {base[1]:.2f} | {base[2]:.3f} | "
                   + " | ".join(cells) + " |")
    return out


def draw_all(exp: Experiment, folder: Path, figure_dir: Path) -> list[str]:
    """Draw every figure of ``exp`` for every variant; markdown image lines."""
    lines = []
    runs = [(name, path) for name, path, _ in variants(folder)] or [("", folder)]
    if exp.key == "grid":
        runs = [("", folder)]
    for module in exp.figures:
        draw = importlib.import_module(f"probsft.figures.{module}").draw
        for name, path in runs:
            stem = f"{module}_{exp.key}" + (f"_{name}" if name else "")
            for png in [p for p in draw(path, figure_dir, stem) if p.suffix == ".png"]:
                lines.append(f"![{exp.key} {name}]({Path(figure_dir).resolve().name}/{png.name})")
    return lines


def run_experiment(exp: Experiment, scale: str, folder: Path, figure_dir: Path | None,
                   progress: bool = True) -> list[str]:
    """Run or resume ``exp`` into ``folder``, draw into ``figure_dir``; markdown lines."""
    run(exp, scale, folder, progress)
    lines = [f"### `{exp.key}` — {exp.claim}", "",
             f"`probsft simulate --preset {exp.key}`" + ("" if scale == "default" else
                                                          f" (scale {scale})"), ""]
    if figure_dir is not None:
        lines += [*draw_all(exp, folder, figure_dir), ""]
    for name, path, cfg in variants(folder):
        if exp.key.startswith("crossover") or exp.key == "threshold":
            rows = at_step(read_rows(path / "results.csv"))
            metric = "eval/acc" if cfg.mode == "learning" else "eval/expected_acc"
            E = max(cfg.noise_rates)
            lines += [f"`{exp.key}{'/' + name if name else ''}`, E={E:g}, seed-mean `{metric}` "
                      "(best in bold):", "", *seed_mean_table(rows, metric, E), ""]
    return lines + verdict_table(exp.verdicts(folder)) + [""]


def reproduce(out_dir: Path, full: bool, quick: bool = False) -> list[str]:
    """Main-job step: every experiment into ``out_dir/sim`` (``sim_full`` / ``sim_quick``)."""
    scale = "full" if full else "quick" if quick else "default"
    sim_dir = Path(out_dir) / ("sim" if scale == "default" else f"sim_{scale}")
    lines = list(INTRO)
    for key, exp in EXPERIMENTS.items():
        lines += run_experiment(exp, scale, sim_dir / key, sim_dir)
    return lines
