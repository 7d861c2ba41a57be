"""Validation step of the main job: run (or resume) the dial grid, save the paired analysis, draw.

    probsft validate [--full] [--out DIR]        # run(): any ExperimentConfig into any folder
    probsft reproduce --only validate [--full]   # reproduce(): the grid into results/validate[_full]
"""

from __future__ import annotations

import json
from pathlib import Path

from probsft.continuum import analysis as an
from probsft.continuum import experiment as ex
from probsft.continuum import predictions as pred
from probsft.continuum.grids import GRIDS, OTHERS, Grid
from probsft.continuum.rule import RULE, RULES, hit_rate, width_text
from probsft.figures.continuum import draw


def run(cfg, out: Path, model_path=None, progress: bool = True, deadline_s=None, workers: int = 1):
    """Run or resume ``cfg`` into ``out``; save paired.csv and verdicts.json, then draw the figure
    from the saved verdicts.json. Returns (analysis, figure paths)."""
    import torch

    torch.set_flush_denormal(True)        # see probsft.validate.backbone.build
    csv_path = ex.run_grid(cfg, out, model_path, progress=progress, deadline_s=deadline_s,
                           workers=workers)
    result = an.write_analysis(ex.read_rows(csv_path), out)
    return result, draw(out / "verdicts.json", out / "continuum")


def _ci(c) -> str:
    return (f"Δ {c['delta']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}], TOST 90% "
            f"[{c['tost_low']:+.1f}, {c['tost_high']:+.1f}], MDE {c['mde']:.1f}")


def report_lines(result: dict, cfg, rows: list[dict], command: str,
                 backbone: str = "`probsft backbone build`, models/backbone") -> list[str]:
    """Markdown lines of the section, every number from the saved analysis."""
    total = ex.n_runs(cfg)
    lines = [f"Command: `{command}` (backbone: {backbone}). "
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
              + ", ".join(f"{counts[v]} {v}" for v in pred.VERDICTS) + ".** By supervision/"
              "optimizer: " + "; ".join(f"{k}: " + ", ".join(f"{n} {v}" for v, n in c.items())
                                        for k, c in result["counts_by_kind"].items()) + ".", "",
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
    lines += ["", "Crossover of −p − NLL: where a non-decreasing (isotonic) fit of the positions' "
              "mean Δ on probe p turns positive, interpolated between neighbouring positions; 95% "
              f"CI from a bootstrap over seeds; against the paper's ≈ {pred.PAPER_CROSSOVER}:"]
    for key, cr in result["crossover"].items():
        where = "no upward crossing" if cr["p"] is None else f"p = {cr['p']:.2f}"
        ci = ("" if cr["ci"] is None else
              f", CI [{cr['ci'][0]:.2f}, {cr['ci'][1]:.2f}]" if cr["p"] is not None else
              f" (the replicates that cross do so within [{cr['ci'][0]:.2f}, {cr['ci'][1]:.2f}])")
        lines.append(f"- {key}: {where}{ci} ({100 * cr['frac_in_range']:.0f}% of replicates "
                     f"cross; the mean Δ changes sign {cr['sign_changes']} time(s) along p; "
                     f"least-squares slope {cr['slope']:+.1f} points per unit p)")
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
              f"{len(result['fit'])} cells."]
    lines += objective_matrix(result)
    lines += adaptive_lines(result)
    lines += hit_rate_lines(result)
    if result["alpha"]:
        lines += ["", "Best α of the (1 − p^α)/α family (NLL is α → 0, −p is α = 1) by mean exact "
                  "match, against probe p (prediction: rises with p); `tied`: several α share the "
                  "best score (e.g. all at the floor), left out of the trend:", ""]
        for (sup, opt), group in pred.by_kind(result["alpha"]).items():
            tr = result["alpha_trend"][f"{sup}/{opt}"]
            cells = ", ".join(f"{a['probe_answer_p']:.2f} → {a['best_alpha']:g}"
                              + (" (tied)" if a["tied"] else "") for a in group)
            trend = ("too few untied positions" if tr["rho"] is None else
                     f"Spearman ρ {tr['rho']:+.2f} over {tr['n']} untied positions, one-sided "
                     f"permutation p {tr['p_value']:.3f}")
            lines.append(f"- {sup}/{opt}: {cells}; {trend}")
    else:
        lines += ["", "Best α against probe p: needs the α family in the grid (`probsft reproduce "
                     "--only validate --full`), not run here."]
    return lines


def objective_matrix(result: dict) -> list[str]:
    """Every objective against NLL: one table per supervision/optimizer, positions by probe p;
    Δ in points, ▲/▼ where the 95% CI excludes 0 (only with more than nll and −p in the grid)."""
    cells = result["cells"]
    if len({c["objective"] for c in cells}) < 2:
        return []
    lines = ["", "Every objective against NLL (Δ exact match in points, paired; ▲/▼: the 95% CI "
             "lies above/below 0):"]
    for (sup, opt), cs in pred.by_kind(cells).items():
        pos = sorted({(c["probe_answer_p"], c["position"]) for c in cs})
        lines += ["", f"{sup}/{opt}:", "", "| objective | " + " | ".join(
            f"{name} ({p:.2f})" for p, name in pos) + " |", "|---" * (len(pos) + 1) + "|"]
        for spec in dict.fromkeys(c["objective"] for c in cs):
            by = {c["position"]: c for c in cs if c["objective"] == spec}
            mark = lambda c: "▲" if c["ci_low"] > 0 else "▼" if c["ci_high"] < 0 else ""
            lines.append(f"| {spec} | " + " | ".join(
                f"{by[n]['delta']:+.1f}{mark(by[n])}" if n in by else "-" for _, n in pos) + " |")
    return lines


def adaptive_lines(result: dict) -> list[str]:
    """Where an adaptive objective is not worse than the best fixed one of each cell."""
    rows = result.get("adaptive") or []
    if not rows:
        return []
    lines = ["", "Adaptive objectives against the best fixed objective of each cell (chosen after "
             "the fact, which favours the fixed side); *not worse*: the one-sided 95% bound lies "
             f"above −{100 * pred.TIE_MARGIN:g} points; *worse*: the 95% CI lies below 0:", ""]
    for spec in dict.fromkeys(r["objective"] for r in rows):
        rs = [r for r in rows if r["objective"] == spec]
        counts = {k: sum(r["status"] == k for r in rs) for k in ("not worse", "worse",
                                                                   "inconclusive")}
        lines.append(f"- {spec}: " + ", ".join(f"{n} {k}" for k, n in counts.items())
                     + f" of {len(rs)} cells.")
        lines += [f"  - {r['status']}: {r['position']} (p {r['probe_answer_p']:.2f}) "
                  f"{r['supervision']}/{r['optimizer']}: {r['delta']:+.1f} "
                  f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}] against {r['best_fixed']}"
                  for r in rs if r["status"] != "not worse"]
    return lines


def _rate_text(s: dict) -> str:
    return f"{s['hits']}/{s['scored']}" + ("" if s["rate"] is None else f" ({100 * s['rate']:.0f}%)")


def _lopo_text(lopo: dict) -> str:
    return ", ".join(f"{h:g} {v[0]}/{v[1]}" for h, v in lopo.items()) or "too few positions"


def _miss_lines(scored: list[dict], mark_held_out: bool = True) -> list[str]:
    """One line per cell the recommendation missed (``hit_rate``'s cells), or "- none"."""
    return [f"- {c['position']} (p {c['probe_answer_p']:.2f}) {c['supervision']}/{c['optimizer']}"
            f"{' (held out)' if c['held_out'] and mark_held_out else ''}: recommended "
            f"{c['recommended']} "
            f"({c['delta_recommended']:+.1f}), best {c['best']} ({c['delta_best']:+.1f})"
            for c in scored if not c["hit"]] or ["- none"]


def hit_rate_lines(result: dict) -> list[str]:
    """The recommendation rules' hit rates on these cells, each set on every other position."""
    from probsft.continuum.cells import split_positions

    cells = result["cells"]
    if not cells:
        return []
    rule, held = split_positions(cells)
    lines = ["", "Recommendation (`probsft recommend`'s measured rules, the default "
             f"`{RULE}` first) against the best measured objective of each cell, each rule set on "
             f"the positions {', '.join(rule)} and scored on those and, held out, on "
             f"{', '.join(held)} (`python -m probsft.continuum.rule <folder>/paired.csv "
             "--rule R`):"]
    for name in sorted(RULES, key=lambda r: r != RULE):
        out = hit_rate(cells, rule, rule=name)
        lines += [f"- rule `{name}` (kernel: {width_text(out['bandwidth'])}, chosen by "
                  f"leave-one-position-out on the rule positions: {_lopo_text(out['lopo'])}): rule "
                  f"positions {_rate_text(out['rule'])}, held-out {_rate_text(out['held_out'])}, "
                  f"held-out cells where NLL would miss {_rate_text(out['held_out_informative'])}. "
                  "Misses:", *("  " + m for m in _miss_lines(out["cells"]))]
    return lines


def reproduce(out_dir: Path, full: bool) -> list[str]:
    """Main-job step: run (or resume) the grid, save the analysis, draw the figure. Without
    ``full``, the saved runs of the full grid (``validate_full/``), when they are of this backbone,
    are analysed and reported too (no new runs): the α trend and the adaptive objectives need it.

    ``PROBSFT_VALIDATE_DEADLINE_S`` (environment): start no new run after this many seconds; the
    section then reports the finished runs and says the grid is partial (the rest resumes later)."""
    import os

    cfg = ex.FULL if full else ex.REDUCED
    out = Path(out_dir) / GRIDS["full" if full else "reduced"].folder
    deadline = os.environ.get("PROBSFT_VALIDATE_DEADLINE_S")
    result, pictures = run(cfg, out, deadline_s=float(deadline) if deadline else None,
                           workers=ex.default_workers())
    command = "probsft reproduce --only validate" + (" --full" if full else "")
    lines = [*report_lines(result, cfg, ex.read_rows(out / "results.csv"), command), "",
             *_figure_lines(pictures, Path(out_dir))]
    if full:
        return lines
    from probsft.reproduce.dial import reproduce_lines as dial_lines

    return (lines + saved_full(Path(out_dir)) + saved_full(Path(out_dir), "ecosystem")
            + saved_others(Path(out_dir)) + curve_lines(out_dir) + dial_lines(Path(out_dir)))


def curve_lines(out_dir: Path) -> list[str]:
    """Rebuild the measured curve `probsft recommend` ships with (probsft.continuum.curve.DEFAULT)
    from the registered grids' paired.csv under ``out_dir`` when every one of them is there."""
    from probsft.continuum import curve as cv
    from probsft.continuum.grids import CURVE

    files = [Path(out_dir) / GRIDS[k].folder / "paired.csv" for k in CURVE]
    if not all(f.exists() for f in files):
        return []
    curve = cv.build(files)
    cv.save(curve, cv.DEFAULT)
    widths = ", ".join(f"{rule} {width_text(h)}" for rule, h in curve.widths.items())
    return ["", "### The measured curve `probsft recommend` reads", "",
            f"Built from {', '.join(f'`{f.parent.name}/paired.csv`' for f in files)} "
            f"({len(curve.cells)} cells) into `data/curves/measured.json` (format version "
            f"{cv.VERSION}); kernel widths chosen once, by leave-one-position-out on all their "
            f"positions: {widths}.", *position_lines(curve.position)]


ACROSS_TASKS = ("These positions are different tasks (a position is confounded with its task), so "
                "this does not test a dial within one task.")


def position_lines(t: dict | None, caveat: str = ACROSS_TASKS) -> list[str]:
    """The position test of a measured curve (probsft.continuum.position) as report lines, closed
    by ``caveat`` (what its positions are)."""
    if not t:
        return []
    r = t["hit_rates"]
    rows = [f"| {name} | {r[key]['all']:.1f} | {r[key]['informative']:.1f} |" for name, key in (
        (f"the `{t['rule']}` rule (reads the probe's p; nested leave-one-position-out)", "rule"),
        ("the noise-kind lookup (leave-one-position-out)", "lookup"),
        (f"always {t['constant']} (the best constant, chosen in-sample)", "constant"))]
    verdict = ("position matters" if t["matters"] else
               "the choice does not depend on position on these curves: `probsft recommend` "
               f"answers with the {t['position_blind']}")
    return ["", f"Does the probe's position pick better than a position-blind policy? Hit rates "
            f"(within the ±2-point band of a cell's best) over {t['cells']} cells at "
            f"{t['positions']} positions; a cell says something when some objective misses there "
            f"({t['informative_cells']} do):", "", "| policy | all cells, % | cells that say "
            "something, % |", "|---|---|---|", *rows, "",
            f"Rule minus the {t['position_blind']} on the cells that say something: "
            f"**{t['delta']:+.1f} points** (95% CI {t['ci'][0]:+.1f} .. {t['ci'][1]:+.1f}, bootstrap "
            f"over positions); position would matter at ≥ +10 with the CI above 0. Verdict: "
            f"{verdict}. {caveat}"]


def _saved_grid(folder: Path, other: str, model_path=None):
    """A grid's saved runs analysed and drawn again, without new runs. Returns (lines, saved):
    ([], None) when there are none; (["", other], None) when they are of another backbone than
    ``model_path`` (nothing written); else ([], (rows, saved config, analysis, figure paths))."""
    rows = ex.read_rows(folder / "results.csv")
    if not rows:
        return [], None
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_sha256") != ex.model_fingerprint(model_path):
        return ["", other], None
    return [], (rows, config, an.write_analysis(rows, folder),
                draw(folder / "verdicts.json", folder / "continuum"))


def _figure_lines(pictures, out_dir: Path) -> list[str]:
    return [f"![continuum]({p.relative_to(out_dir)})" for p in pictures if p.suffix == ".png"]


def saved_full(out_dir: Path, key: str = "full") -> list[str]:
    """Report lines of a shipped-backbone grid's saved runs under ``out_dir`` (the registry's
    ``key``: the full grid, or the ecosystem objectives' grid; analysed and drawn again, no new
    runs); [] when there are none, a line saying so when they are of another backbone."""
    grid = GRIDS[key]
    folder = out_dir / grid.folder
    command = grid.command()
    lines, saved = _saved_grid(folder, f"The saved runs of {folder.name}/ are of another "
                               f"backbone: not reported; `{command}` starts it over.")
    if saved is None:
        return lines
    rows, _, result, pictures = saved
    title = "The full grid" if key == "full" else grid.title
    return ["", f"### {title}, from its saved runs", "",
            f"Analysed from `{folder.name}/results.csv` without new runs; `{command}` resumes it.",
            "", *report_lines(result, grid.config(), rows, command), "",
            *_figure_lines(pictures, out_dir), *feature_lines(folder, "models/backbone")]


def saved_others(out_dir: Path) -> list[str]:
    """The sections of every other backbone's saved grid (probsft.continuum.grids.OTHERS)."""
    return [line for other in OTHERS for line in saved_other(Path(out_dir), other)]


def saved_other(out_dir: Path, other: Grid) -> list[str]:
    """Report lines of another backbone's saved grid (analysed and drawn again, no new runs) and
    the recommendation rules' hit rates on it, each set on every position of ``other.rule_grids``
    (pooled): positions of another model. [] when there are no saved runs; a line when they are
    not of that backbone's weights."""
    folder = out_dir / other.folder
    lines, saved = _saved_grid(folder, f"The saved runs in {folder.name}/ are not of "
                               f"models/{other.model}: not reported.", other.model_path)
    if saved is None:
        return lines
    rows, config, result, pictures = saved
    cfg = ex.ExperimentConfig.from_dict({k: v for k, v in config.items() if k != "model_sha256"})
    build = other.build_command()
    lines = ["", f"### {other.title}", "",
             f"Analysed from `{folder.name}/results.csv` without new runs; `{other.command()}` "
             f"resumes it. The backbone: `{build}` (the shipped doses, another seed). Its positions "
             "were chosen by build probe p alone, before any of its fine-tunes ran.", "",
             *report_lines(result, cfg, rows, other.command(), f"`{build}`"), "",
             *_figure_lines(pictures, out_dir), *feature_lines(folder, f"models/{other.model}")]
    return lines + rule_lines(out_dir, other)


FEATURE_HEADS = {"answer_p": "answer p", "frac_p_gt_0.55": "p > 0.55", "mean_entropy": "H (nats)",
                 "mean_sumsq": "Σq²", "top1_accuracy": "top-1", "frac_confident_wrong":
                 "conf. wrong", "deft_weight": "DEFT weight", "negp_weight": "−p weight",
                 "noise_label_p": "p of answer-noise labels", "base_exact_match": "base EM"}


def feature_lines(folder: Path, model: str) -> list[str]:
    """The saved position features of a grid (``features.json``, probsft.continuum.features) as a
    table; [] when there are none."""
    from probsft.continuum.features import FEATURES

    path = folder / "features.json"
    if not path.exists():
        return []
    feats = json.loads(path.read_text())
    rows = sorted(feats.items(), key=lambda kv: kv[1]["answer_p"])
    return ["", f"What the base model says about each position before any fine-tune "
            f"(`python -m probsft.continuum.features results/{folder.name} --model {model}`; "
            "weights: the share of NLL's gradient weight E(1 − p) that DEFT and −p keep):", "",
            "| position | " + " | ".join(FEATURE_HEADS[f] for f in FEATURES) + " |",
            "|---|" + "---|" * len(FEATURES),
            *(f"| {t} | " + " | ".join(f"{f[n]:.3f}" for n in FEATURES) + " |" for t, f in rows)]


def rule_lines(out_dir: Path, other: Grid) -> list[str]:
    """The rules (:data:`RULES`, the registered ones first) and probe-blind fixed choices scored
    on every cell of ``other``'s grid, overall and by noise kind."""
    from probsft.continuum.cells import fixed_choice, read_grids, read_paired

    rule_folders = [GRIDS[k].folder for k in other.rule_grids]
    grids = [out_dir / f / "paired.csv" for f in rule_folders]
    if not all(g.exists() for g in grids):
        return []
    cells = read_grids(grids)
    test = read_paired(out_dir / other.folder / "paired.csv")
    at = sorted({c["position"] for c in cells})
    rule_files = [f"results/{f}/paired.csv" for f in rule_folders]
    script = (f"python -m probsft.continuum.rule {rule_files[0]} results/{other.folder}/"
              f"paired.csv" + (f" --also {' '.join(rule_files[1:])}" if rule_files[1:] else ""))
    lines = ["", f"**The recommendation rules on this grid.** Each set on every position of "
             f"{' + '.join(rule_folders)}"
             f"{' (pooled, positions tagged by grid)' if len(grids) > 1 else ''}, scored on every "
             f"cell here, all held out (`{script} --rule R`). Hits: within the ±2-point band of the "
             "cell's best, or a CI reaching it.", ""]
    rules = [*other.registered, *(r for r in RULES if r not in other.registered)]
    for rule in rules:
        out = hit_rate(cells, at, test_cells=test, rule=rule)
        status = ("registered before this grid ran" if rule in other.registered else
                  "written after this grid's results were read: not a test")
        lines.append(f"- rule `{rule}` ({status}; kernel: {width_text(out['bandwidth'])}, "
                     f"leave-one-position-out {_lopo_text(out['lopo'])}): "
                     f"**{_rate_text(out['held_out'])}**; where NLL would miss "
                     f"{_rate_text(out['held_out_informative'])}; by noise kind "
                     f"{_kinds_text(out['held_out_by_supervision'])}. Misses:")
        lines += ["  " + m for m in _miss_lines(out["cells"], mark_held_out=False)]
    for spec in FIXED:
        f = fixed_choice(test, spec)
        lines.append(f"- always {spec} (no rule): {_rate_text(f['all'])}; by noise kind "
                     f"{_kinds_text(f['by_supervision'])}")
    return lines


FIXED = ("deft", "nll", "p")      # probe-blind choices scored beside the rules


def _kinds_text(by: dict) -> str:
    return ", ".join(f"{sup} {_rate_text(s)}" for sup, s in by.items())
