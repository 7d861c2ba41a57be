"""The within-task dial's report lines (probsft.continuum.dial, .heldout), from saved files only.

The dial's runs take an hour on the 2-core machine and need the dial builds (not shipped), so the
main job never runs them: `python -m probsft.continuum.dial run --dial KEY` does, and writes
``positions.json``, ``paired.csv`` and ``verdicts.json`` beside the checkpoints' runs. This step
reports what is saved: the positions, the cells (as every grid), the crossover within each task,
the rule fitted on the fit dial (leave-one-position-out, and the position test) and the registered
held-out test (``registered_test.json``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from probsft.continuum import dial as dl
from probsft.continuum import predictions as pred


def _positions_table(positions: list[dict], result: dict) -> list[str]:
    probe = {c["position"]: c["probe_answer_p"] for c in result["cells"]}
    lines = ["| position | dial step | build probe p | grid probe p | base exact match | "
             "checkpoint sha256 |", "|---|---|---|---|---|---|"]
    for p in positions:
        em = result["base_exact_match"].get(p["position"])
        lines.append(f"| {p['position']} | {p['step']} | {p['build_answer_p']:.3f} | "
                     f"{probe.get(p['position'], float('nan')):.3f} | "
                     + ("-" if em is None else f"{100 * em:.1f}%")
                     + f" | {(p['model_sha256'] or '-')[:12]} |")
    return lines


def _crossover_lines(result: dict) -> list[str]:
    lines = ["", "The −p − NLL crossover located **within each task** (isotonic root of the mean Δ "
             f"along the task's probe p, 95% CI by a bootstrap over seeds; the paper's ≈ "
             f"{pred.PAPER_CROSSOVER}):", "",
             "| task | supervision/optimizer | Δ(−p) along p | crossover | 95% CI | replicates "
             "crossing |", "|---|---|---|---|---|---|"]
    for c in result["task_crossovers"]:
        where = "none" if c["p"] is None else f"{c['p']:.2f}"
        ci = "-" if c["ci"] is None else f"[{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]"
        deltas = " → ".join(f"{d:+.0f}" for d in c["deltas"])
        lines.append(f"| {c['task']} | {c['supervision']}/{c['optimizer']} | {deltas} "
                     f"(p {c['p_range'][0]:.2f}–{c['p_range'][1]:.2f}) | {where} | {ci} | "
                     f"{100 * c['frac_in_range']:.0f}% |")
    moves = result["crossover_moves"]
    lines += ["", "Does the crossover move between tasks (two tasks' CIs disjoint)? "
              + "; ".join(f"{k}: {v}" for k, v in moves.items()) + "."]
    return lines


def _rule_lines(folder: Path) -> list[str]:
    """The band rule fitted on the dial: its width and the position test, from the frozen curve
    when it is the fit dial's, else rebuilt from paired.csv (no file written)."""
    from probsft.continuum import curve as cv
    from probsft.continuum.heldout import FROZEN
    from probsft.reproduce.validate import position_lines

    curve = (cv.load(FROZEN) if FROZEN.exists() else cv.build([folder / "paired.csv"]))
    widths = ", ".join(f"{r} {('∞' if w == float('inf') else f'{w:g}')}"
                       for r, w in curve.widths.items())
    lines = ["", f"**The rule fitted on this dial** (`data/curves/{FROZEN.name}`, built by "
             f"`python -m probsft.continuum.heldout freeze`): the band rule's Δs smoothed along "
             f"probe p, kernel width chosen by leave-one-position-out: {widths}."]
    return lines + position_lines(curve.position, "Here the positions are the same tasks at "
                                                  "several checkpoints.")


def _registered_lines(folder: Path) -> list[str]:
    path = folder / "registered_test.json"
    if not path.exists():
        return []
    t = json.loads(path.read_text())
    r = t["hit_rates"]
    rows = [f"| {name} | {v['all']:.1f} | {v['informative']:.1f} |" for name, v in r.items()]
    v = t["vs_best_constant"]
    others = "; ".join(f"vs {k[3:].replace('_', ' ')}: {d['delta']:+.1f} [{d['ci'][0]:+.1f}, "
                       f"{d['ci'][1]:+.1f}]" for k, d in t.items()
                       if k.startswith("vs_") and k != "vs_best_constant")
    return ["", f"**The registered held-out test** (`python -m probsft.continuum.heldout score`; "
            f"the frozen rule's sha256 and this dial were committed before its runs): "
            f"{t['cells']} cells at {t['positions']} positions, {t['informative_cells']} "
            "informative (some candidate misses there).", "",
            "| policy | all cells, % | informative cells, % |", "|---|---|---|", *rows, "",
            f"Rule minus the best constant (always {t['best_constant']}, chosen on the held-out "
            f"informative cells; the fit dial's best constant: always {t['fit_constant']}): "
            f"**{v['delta']:+.1f} points** (95% CI {v['ci'][0]:+.1f} .. {v['ci'][1]:+.1f}, "
            f"bootstrap over positions). Target: ≥ +10 with the CI above 0. **Verdict: "
            f"{v['verdict']}.** Beside it, paired the same way: {others}."]


def dial_lines(out_dir: Path, key: str) -> list[str]:
    """Report lines of one registered dial's saved results under ``out_dir``; [] when none."""
    from probsft.figures.dial import draw
    from probsft.reproduce.validate import report_lines

    d = dl.DIALS[key]
    folder = Path(out_dir) / d.folder
    if not (folder / "verdicts.json").exists() or not (folder / "positions.json").exists():
        return []
    result = json.loads((folder / "verdicts.json").read_text())
    positions = json.loads((folder / "positions.json").read_text())["positions"]
    rows = dl.rows(folder, positions)
    cfg = dataclasses.replace(d.config, tasks=tuple(p["task"] for p in positions))
    lines = ["", f"### {d.title}", "",
             f"The build: `{d.build_command()}` (checkpoints not shipped; their sha256 below). "
             f"Positions: per task, the dial steps whose build probe answer p lies nearest "
             f"{', '.join(map(str, d.targets))}, chosen by that probe alone before any fine-tune "
             f"(`python -m probsft.continuum.dial positions --dial {key}`). Runs: "
             f"`{d.command()}` (resumable); a position is task@step.", "",
             *_positions_table(positions, result), "",
             *report_lines(result, cfg, rows, d.command(), f"`{d.build_command()}`"),
             *_crossover_lines(result), "",
             *(f"![dial]({p.relative_to(out_dir)})" for p in draw(folder / "verdicts.json",
                                                                   folder / "dial")
               if p.suffix == ".png")]
    if key == "fit":
        lines += _rule_lines(folder)
    return lines + _registered_lines(folder)


def _ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def sizes_lines(out_dir: Path) -> list[str]:
    """The crossover at two sizes (probsft.continuum.sizes): sizes.json rewritten from the two
    dials' saved verdicts, its table and figure; [] until both dials are analysed."""
    from probsft.continuum import sizes
    from probsft.errors import UserError
    from probsft.figures.sizes import draw

    try:
        path = sizes.write(Path(out_dir))
    except UserError:
        return []
    data = json.loads(path.read_text())
    small, large = (dl.DIALS[k] for k in sizes.PAIR)
    lines = ["", "### Does the crossover move with model size?", "",
             f"The within-task curve at two sizes: the tiny backbone's dial (0.83M parameters, "
             f"`{small.command()}`) and the medium's (8.9M, `{large.command()}`), AdamW, the tasks "
             f"and supervision kinds they share, positions chosen by the build probe alike. "
             f"Each crossing's 95% CI is a bootstrap over its seeds, a replicate without a "
             f"crossing censored at the probed range's end (≥/≤). Registered before the medium runs "
             f"(`continuum/sizes.py`): the claim *{data['claim']}*; per row the shift of the "
             "crossover (medium − tiny; a crossing outside the probed range censored at its end) "
             "with a bootstrap over each size's seeds; confirmed when its 95% CI lies on the side "
             f"towards {data['paper_crossover']}, refuted on the other, equivalent when the 90% CI "
             f"lies inside ±{data['margin']}, else inconclusive (also when both sizes are censored "
             "at the same end). The sign rule does not ask where the medium's crossing ends: one "
             "that moves past 0.5 counts as moving towards it, so the table says whether it ends "
             "nearer. `python -m probsft.continuum.sizes` writes "
             f"`{path.relative_to(out_dir)}`.", "",
             "| task | labels | tiny crossover | 95% CI | medium crossover | 95% CI | shift | 95% CI "
             "| 90% CI | ends nearer 0.5? | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(
            f"| {r['task']} | {r['supervision']} | "
            f"{sizes.crossing_text(r['a'], r['censored_a'])} | {_ci(r['ci_a'])} | "
            f"{sizes.crossing_text(r['b'], r['censored_b'])} | {_ci(r['ci_b'])} | "
            f"{r['shift']:+.2f} | "
            f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | [{r['ci90'][0]:+.2f}, {r['ci90'][1]:+.2f}] | "
            f"{r['direction']} | **{r['verdict']}** |")
    counts = ", ".join(f"{v} {n}" for v, n in data["counts"].items())
    lines += ["", f"Verdicts, counted separately: {counts}.", ""]
    lines += [f"![sizes]({p.relative_to(out_dir)})" for p in draw(path, path.with_suffix(""))
              if p.suffix == ".png"]
    return lines


def reproduce_lines(out_dir: Path) -> list[str]:
    """Every registered dial's saved section, then the two sizes' crossovers."""
    return [line for key in dl.DIALS for line in dial_lines(out_dir, key)] + sizes_lines(out_dir)
