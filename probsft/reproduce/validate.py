"""Validation step of the main job: run (or resume) the continuum grid, save verdicts, draw.

    probsft validate [--full] [--out DIR]        # run(): any ExperimentConfig into any folder
    probsft reproduce --only validate            # reproduce(): the default grid into results/
"""

from __future__ import annotations

import json
from pathlib import Path

from probsft.figures.continuum import draw
from probsft.validate import experiment as ex
from probsft.validate.store import atomic_write


def run(cfg, out: Path, model_path=None, progress: bool = True):
    """Run or resume ``cfg`` into ``out``; save verdicts.json, draw the figure from the saved CSV.

    Returns (markdown table lines, verdicts, figure paths)."""
    csv_path = ex.run_grid(cfg, out, model_path, progress=progress)
    table, verdicts = ex.summarize(ex.read_rows(csv_path), cfg.min_gap)
    atomic_write(out / "verdicts.json", json.dumps(verdicts, indent=1))
    return table, verdicts, draw(csv_path, out / "continuum")


def verdict_lines(verdicts: list[dict]) -> list[str]:
    words = {"p": "−p > NLL", "nll": "NLL > −p", "tie": "tie", "nll_or_tie": "NLL ≥ −p"}
    out = []
    for v in verdicts:
        out.append(f"- **{v['task']}** (noise {v['noise']:g}, {v['region']}, probe p = "
                   f"{v['probe_mean_p']:.2f}): predicted {words[v['prediction']]}, measured "
                   f"{words[v['measured']]} (Δ {v['metric']} = {100 * v['delta_p_minus_nll']:+.1f} "
                   f"pts, tie band ±{100 * v['tolerance']:.1f}) → "
                   f"{'AGREES' if v['agrees'] else 'DISAGREES'}; ordering {v['ordering']}")
    return out



def reproduce(out_dir: Path, full: bool) -> list[str]:
    """Main-job step: run (or resume) the grid, save the verdicts, draw the figure."""
    cfg = ex.FULL if full else ex.REDUCED
    out = Path(out_dir) / ex.folder(full)
    table, verdicts, pictures = run(cfg, out)
    n_ok = sum(v["agrees"] for v in verdicts)
    return ([f"Embedded backbone (models/backbone), {len(cfg.seeds)} seeds, {cfg.steps} steps, "
             f"token-noise rates {list(cfg.noise)}; metric per task: exact match "
             f"(figlet: Jaro–Winkler). Mean ± std over seeds, in %.", "", *table, "",
             f"**Verdicts (−p vs NLL): {n_ok}/{len(verdicts)} agree with the theory.**", "",
             *verdict_lines(verdicts), "", *[f"![continuum]({p.relative_to(Path(out_dir))})"
                                              for p in pictures if p.suffix == ".png"]])
