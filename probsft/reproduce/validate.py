"""Validation step of the main job: run (or resume) the dial grid, save the paired analysis, draw.

    probsft validate [--full] [--out DIR]        # run(): any ExperimentConfig into any folder
    probsft reproduce --only validate [--full]   # reproduce(): the grid into results/validate[_full]
"""

from __future__ import annotations

import json
from pathlib import Path

from probsft.figures.continuum import draw
from probsft.validate import experiment as ex
from probsft.validate import predictions as pred


def run(cfg, out: Path, model_path=None, progress: bool = True, deadline_s=None):
    """Run or resume ``cfg`` into ``out``; save paired.csv and verdicts.json, then draw the figure
    from the saved verdicts.json. Returns (analysis, figure paths)."""
    import torch

    torch.set_flush_denormal(True)        # see probsft.validate.backbone.build
    csv_path = ex.run_grid(cfg, out, model_path, progress=progress, deadline_s=deadline_s)
    result = ex.write_analysis(ex.read_rows(csv_path), out)
    return result, draw(out / "verdicts.json", out / "continuum")


def _ci(c) -> str:
    return (f"Δ {c['delta']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}], TOST 90% "
            f"[{c['tost_low']:+.1f}, {c['tost_high']:+.1f}], MDE {c['mde']:.1f}")


def report_lines(result: dict, cfg, rows: list[dict], command: str) -> list[str]:
    """Markdown lines of the section, every number from the saved analysis."""
    total = len(cfg.tasks) * (1 + len(cfg.seeds) * len(cfg.supervision) * len(cfg.optimizers)
                              * len(cfg.objectives))
    lines = [f"Command: `{command}` (backbone: `probsft backbone build`, models/backbone). "
             f"Positions: the dial's transformations, placed by the base model's answer-token "
             f"mean p; {len(cfg.seeds)} seeds, {cfg.steps} steps, objectives "
             f"{', '.join(cfg.objectives)}, optimizers {', '.join(cfg.optimizers)}, supervision "
             f"{', '.join(cfg.supervision)} (noise rate {cfg.noise_rate:g}), {cfg.n_heldout} held-out "
             f"items per position. Δ = exact match of the objective minus NLL, paired within seed, "
             f"in points; CI 95% = seeds ∪ item bootstrap; tie margin ±{100 * pred.TIE_MARGIN:g}.",
             "", f"Runs finished: {len(rows)} of {total}"
             + ("" if len(rows) >= total else " (partial: rerun the command to resume)") + ".", ""]
    probes = {}
    for c in result["cells"]:
        probes[c["position"]] = (c["probe_answer_p"], c["region"])
    lines += ["| position | probe answer p | region | base exact match |", "|---|---|---|---|"]
    for pos, (p, region) in sorted(probes.items(), key=lambda kv: kv[1][0]):
        em = result["base_exact_match"].get(pos)
        lines.append(f"| {pos} | {p:.3f} | {region} | "
                     + ("-" if em is None else f"{100 * em:.1f}%") + " |")
    counts = result["counts"]
    lines += ["", "**Verdicts (−p vs NLL, per position × supervision × optimizer): "
              + ", ".join(f"{counts[v]} {v}" for v in pred.VERDICTS) + ".**", "",
              "| position | p | supervision | optimizer | predicted | Δ [95% CI] | TOST 90% | MDE | "
              "verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for c in (c for c in result["cells"] if c["verdict"]):
        lines.append(f"| {c['position']} | {c['probe_answer_p']:.2f} | {c['supervision']} | "
                     f"{c['optimizer']} | {c['prediction']} | {c['delta']:+.1f} [{c['ci_low']:+.1f}, "
                     f"{c['ci_high']:+.1f}] | [{c['tost_low']:+.1f}, {c['tost_high']:+.1f}] | "
                     f"{c['mde']:.1f} | {c['verdict']} |")
    bad = [c for c in result["cells"] if c["verdict"] in ("refuted", "inconclusive")]
    lines += ["", f"Refuted or inconclusive cells ({len(bad)}):"]
    lines += [f"- {c['verdict']}: {c['position']} (p {c['probe_answer_p']:.2f}, {c['region']}), "
              f"{c['supervision']}/{c['optimizer']}, predicted {c['prediction']}: {_ci(c)}"
              for c in bad] or ["- none"]
    lines += ["", f"Crossover of −p − NLL (root of a least-squares line through the positions' Δ; "
              f"95% CI from a bootstrap over seeds), against the paper's ≈ {pred.PAPER_CROSSOVER}:"]
    for key, cr in result["crossover"].items():
        where = "no root in [0, 1]" if cr["p"] is None else f"p = {cr['p']:.2f}"
        ci = "" if cr["ci"] is None else f", CI [{cr['ci'][0]:.2f}, {cr['ci'][1]:.2f}]"
        lines.append(f"- {key}: {where}{ci} (slope {cr['slope']:+.1f} points per unit p; "
                     f"{100 * cr['frac_in_range']:.0f}% of replicates cross inside [0, 1])")
    lines += ["", "Fit follows winner (mean answer-token p on the training set after SFT; Eq. 5's "
              "p is 1 − L₋ₚ): does the objective with the higher training p also win held out?", "",
              "| position | p | supervision | optimizer | train p (NLL) | train p (−p) | held-out "
              "winner (sign of Δ) |", "|---|---|---|---|---|---|---|"]
    for f in result["fit"]:
        lines.append(f"| {f['position']} | {f['probe_answer_p']:.2f} | {f['supervision']} | "
                     f"{f['optimizer']} | {f['train_p_nll']:.3f} | {f['train_p_p']:.3f} | "
                     f"{f['winner']} |")
    agree = sum(f["winner"] == f["fit_winner"] for f in result["fit"])
    lines += ["", f"The higher-fit objective is the held-out winner in {agree} of "
              f"{len(result['fit'])} cells.", ""]
    if result["alpha"]:
        lines += ["Best α of −p^α against probe p (prediction: rises with p):", ""]
        lines += [f"- {a['supervision']}/{a['optimizer']}: p {a['probe_answer_p']:.2f} → α "
                  f"{a['best_alpha']:g}" for a in result["alpha"]]
    else:
        lines.append("Best α against probe p: needs the full grid (`probsft reproduce --only "
                     "validate --full`), not run here.")
    return lines


def reproduce(out_dir: Path, full: bool) -> list[str]:
    """Main-job step: run (or resume) the grid, save the analysis, draw the figure.

    ``PROBSFT_VALIDATE_DEADLINE_S`` (environment): start no new run after this many seconds; the
    section then reports the finished runs and says the grid is partial (the rest resumes later)."""
    import os

    cfg = ex.FULL if full else ex.REDUCED
    out = Path(out_dir) / ex.folder(full)
    deadline = os.environ.get("PROBSFT_VALIDATE_DEADLINE_S")
    result, pictures = run(cfg, out, deadline_s=float(deadline) if deadline else None)
    command = "probsft reproduce --only validate" + (" --full" if full else "")
    return [*report_lines(result, cfg, ex.read_rows(out / "results.csv"), command), "",
            *[f"![continuum]({p.relative_to(Path(out_dir))})" for p in pictures
              if p.suffix == ".png"]]
