"""The simulator's step of the main job: run every preset, draw every figure, summarise honestly.

    probsft reproduce --only sim     # -> results/sim/<preset>/{config.json,*.csv}, results/sim/*.png
    from probsft.reproduce.sim import reproduce; reproduce(Path("results"), full=False)

:func:`run_preset` runs one experiment (results saved first), draws its figure from the saved files
and returns markdown lines with the measured numbers and a verdict against the paper's prediction
(stated as "reproduced" or "NOT reproduced"; the simulator is never tuned to agree).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np

from probsft.sim import analysis
from probsft.sim.escape import EscapeConfig, fit_slopes, read_escape, run_escape
from probsft.sim.phase import save_boundary
from probsft.sim.presets import PRESETS, preset
from probsft.sim.sweep import chunk_size, grid, read_rows, run_sweep

FIGURES = {  # preset -> (figure module, file stem)
    "crossover": ("sim_crossover", "sim_crossover"),
    "crossover-theory": ("sim_crossover", "sim_crossover_theory"),
    "custom": ("sim_crossover", "sim_custom"),
    "phase": ("sim_phase", "sim_phase"), "phase-early": ("sim_phase", "sim_phase_early"),
    "alpha": ("sim_alpha", "sim_alpha"), "alpha-theory": ("sim_alpha", "sim_alpha_theory"),
    "threshold": ("sim_threshold", "sim_threshold"), "fit": ("sim_fit", "sim_fit"),
    "escape": ("sim_escape", "sim_escape"),
}


def _verdict(ok: bool) -> str:
    return "reproduced" if ok else "**NOT reproduced**"


def _table(rows, metric, objectives, E=None) -> list[str]:
    """Markdown table: prior strength, base mean p, then seed-mean ``metric`` per objective."""
    E = sorted({r["noise_rate"] for r in rows})[0] if E is None else E
    rows = [r for r in rows if r["noise_rate"] == E]
    means = analysis.seed_mean(rows, metric)
    base = analysis.seed_mean(rows, "base/mean_p", by=("prior_strength",))
    frac = analysis.seed_mean(rows, "base/frac_p055", by=("prior_strength",))
    labels = {r["objective"]: r["label"] for r in rows}
    out = ["| prior s | base p (Eq. 5) | p>0.55 (Tab. 6) | "
           + " | ".join(labels[o] for o in objectives) + " |",
           "|---" * (len(objectives) + 3) + "|"]
    for s in sorted({r["prior_strength"] for r in rows}):
        vals = [means[(o, s, E)][0] for o in objectives]
        best = int(np.nanargmax(vals))
        cells = [f"**{v:.3f}**" if i == best else f"{v:.3f}" for i, v in enumerate(vals)]
        out.append(f"| {s:g} | {base[(s,)][0]:.2f} | {frac[(s,)][0]:.2f} | "
                   + " | ".join(cells) + " |")
    return out


def _crossover_lines(rows, metric="eval/acc") -> list[str]:
    """Per noise rate: the table and verdicts (a winner must beat the runner-up by > 0.005)."""
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    averse, leaning = {"nll", "alpha(0.1)", "alpha(0.5)"}, {"p", "alpha(10)", "nll@p>=0.2"}
    means = analysis.seed_mean(rows, metric)
    lines = []
    for E in sorted({r["noise_rate"] for r in rows}):
        lo, hi = min(r["prior_strength"] for r in rows), max(r["prior_strength"] for r in rows)
        ends = {}
        for s in (lo, hi):
            ranked = sorted(((means[(o, s, E)][0], o) for o in objectives), reverse=True)
            ends[s] = [o for v, o in ranked if ranked[0][0] - v <= 0.005]   # ties within 0.005
        show = {s: ("tie: " if len(b) > 1 else "") + ", ".join(b) for s, b in ends.items()}
        lines += [f"Noise E={E:g}, seed-mean `{metric}` (best in bold):", "",
                  *_table(rows, metric, objectives, E), "",
                  f"- weak end (s={lo:g}): best `{show[lo]}`; strong end (s={hi:g}): best "
                  f"`{show[hi]}`."]
        if E == 0:
            lines.append(f"- Clean labels: theory (§6.4) says NLL is at least as good at every "
                         f"prior strength — strong end {_verdict('nll' in ends[hi])}.")
        else:
            lines += [f"- Paper: NLL best at the weak end — {_verdict('nll' in ends[lo])}"
                      + ("" if "nll" in ends[lo] else
                         f" (winner `{show[lo]}`, prior-averse: "
                         f"{all(o in averse for o in ends[lo])})") + ".",
                      f"- Paper: a prior-leaning objective best at the strong end under noise — "
                      f"{_verdict(any(o in leaning for o in ends[hi]))}."]
        lines.append("")
    return lines


def _phase_lines(rows, bnd) -> list[str]:
    agree, cells = analysis.pairwise_agreement(rows, "nll", "p")
    clean = [c for c in cells if c["noise_rate"] == 0.0]
    clean_nll = np.mean([c["sim_winner"] == "nll" for c in clean]) if clean else float("nan")
    weak = [c for c in cells if c["prior_strength"] == 0.0]
    weak_nll = np.mean([c["sim_winner"] == "nll" for c in weak]) if weak else float("nan")
    lines = [f"- First-order prediction (sign of E_x[Ṙ_−p − Ṙ_NLL] at t=0) agrees with the "
             f"simulated winner (final rᵀq) in **{100 * agree:.1f}%** of {len(cells)} cells.",
             f"- Clean labels (E=0): NLL wins {100 * clean_nll:.0f}% of prior strengths "
             f"(paper §6.4: NLL at least as fast when clean — {_verdict(clean_nll == 1.0)}).",
             f"- Uniform prior (s=0): NLL wins {100 * weak_nll:.0f}% of noise rates "
             f"(paper §6.5 — {_verdict(weak_nll == 1.0)}).",
             "", "| prior s | base q(y*) | E* (theory) |", "|---|---|---|"]
    lines += [f"| {b['prior_strength']:g} | {b['base/mean_p_true']:.2f} | {b['e_star']:.3f} |"
              for b in bnd]
    return lines


def _alpha_lines(rows) -> list[str]:
    best = analysis.best_alpha(rows, analysis.primary_metric(rows))
    alphas = [b[2] for b in best]
    rising = np.corrcoef([b[1] for b in best], alphas)[0, 1] if len(set(alphas)) > 1 else 0.0
    return ["| prior s | base p | best α (NLL = 0) |", "|---|---|---|",
            *[f"| {s:g} | {p:.2f} | {a:g} |" for s, p, a in best], "",
            f"- Best α rises with prior strength (corr(base p, best α) = {rising:.2f}) — "
            f"{_verdict(rising > 0.5 and alphas[-1] > alphas[0])}; weak-end best α = {alphas[0]:g} "
            f"(paper: smallest α best at MW — {_verdict(alphas[0] <= 0.1)}); strong-end best α = "
            f"{alphas[-1]:g} (paper: ≈1 then plateau — {_verdict(alphas[-1] >= 1)})."]


def _threshold_lines(rows) -> list[str]:
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    m = analysis.seed_mean(rows, "eval/acc")
    s1 = max(r["prior_strength"] for r in rows)
    E = sorted({r["noise_rate"] for r in rows})[0]
    nll, p, thr = (m[(o, s1, E)][0] for o in ("nll", "p", "nll@p>=0.2"))
    gain = p - nll
    rec = (thr - nll) / gain if gain > 0 else float("nan")
    bottom = min(m[(o, s1, E)][0] for o in objectives if "<=" in o)
    top = m.get(("nll@p>=Q90", s1, E), (float("nan"),))[0]
    return [*_table(rows, "eval/acc", objectives), "",
            f"- Strong end (s={s1:g}): −p − NLL = {gain:+.3f}; NLL·1{{p≥0.2}} recovers "
            f"{100 * rec:.0f}% of it (paper: most or all — {_verdict(gain > 0 and rec >= 0.5)}).",
            f"- Top-10% only (NLL·1{{p≥Q90}}) − NLL = {top - nll:+.3f} (paper: beats full NLL — "
            f"{_verdict(top > nll)}).",
            f"- Bottom-quantile only, worst: {bottom - nll:+.3f} vs NLL (paper: harmful — "
            f"{_verdict(bottom < nll)})."]


def _fit_lines(rows) -> list[str]:
    acc = analysis.winners(rows, "eval/acc")
    fitw = analysis.winners(rows, "train/mean_p")
    same = np.mean([acc[k][0] == fitw[k][0] for k in acc])
    lines = [*_table(rows, "train/mean_p", ["nll", "p"]), "",
             f"- The objective with the higher training-target p after training is also the "
             f"accuracy winner at {100 * same:.0f}% of prior strengths (paper Fig. 6 right: fit "
             f"follows the winner — {_verdict(same >= 0.8)})."]
    return lines


def _escape_lines(rows) -> list[str]:
    sl = fit_slopes(rows)
    out = ["| objective | d log t / d log(1/p0) | d t / d log(1/p0) |", "|---|---|---|"]
    out += [f"| `{k}` | {v['loglog']:.3f} | {v['linlog']:.3g} |" for k, v in sl.items()]
    if "p" in sl and "nll" in sl:
        out += ["", f"- −p: t ∝ (1/p0)^{sl['p']['loglog']:.2f} (prediction 1/p0 — "
                f"{_verdict(abs(sl['p']['loglog'] - 1) < 0.15)}); NLL: t ≈ "
                f"{sl['nll']['linlog']:.2f}·log(1/p0) + c (prediction log(1/p0) — "
                f"{_verdict(abs(sl['nll']['linlog'] - 1) < 0.25)})."]
    return out


def run_preset(name: str, cfg, out: Path, figure_dir: Path | None, progress: bool = True):
    """Run one experiment into ``out``, draw its figure into ``figure_dir``; markdown lines."""
    out = Path(out)
    start = time.perf_counter()
    if isinstance(cfg, EscapeConfig):
        run_escape(cfg, out, progress)
        size = f"{len(cfg.objectives)} objectives × {len(cfg.p0s)} p0, V={cfg.vocab_size}"
    else:
        run_sweep(cfg, out, progress)
        if name.startswith("phase"):
            save_boundary(cfg, out)
        state = (f"[{cfg.contexts}, {cfg.vocab_size}]" if cfg.mode == "theory"
                 else f"W [{cfg.vocab_size}, {cfg.feature_dim}], {cfg.contexts} train contexts")
        size = (f"{cfg.mode} mode, {len(cfg.objectives)} objectives × {len(grid(cfg))} configs "
                f"(priors × noise × seeds), batched {min(chunk_size(cfg), len(grid(cfg)))} "
                f"configs per tensor program, state {state} each, {cfg.steps} steps")
    lines = [f"### `{name}`", "", f"`probsft simulate --preset {name}` — {size}; "
             f"{time.perf_counter() - start:.1f} s.", ""]
    if figure_dir is not None:
        module, stem = FIGURES.get(name, FIGURES["custom"])
        draw = importlib.import_module(f"probsft.figures.{module}").draw
        paths = draw(out, figure_dir, stem)
        lines += [f"![{name}]({Path(figure_dir).name}/{paths[0].name})", ""]
    if isinstance(cfg, EscapeConfig):
        return lines + _escape_lines(read_escape(out / "escape.csv"))
    rows = read_rows(out / "results.csv")
    if name.startswith("phase"):
        from probsft.sim.phase import read_boundary
        return lines + _phase_lines(rows, read_boundary(out / "boundary.csv"))
    extra = {"alpha": _alpha_lines, "alpha-theory": _alpha_lines,
             "threshold": _threshold_lines, "fit": _fit_lines}
    if name in extra:
        return lines + extra[name](rows)
    metrics = ("eval/expected_acc",) if cfg.mode == "theory" else ("eval/acc", "eval/expected_acc")
    for metric in metrics:
        lines += _crossover_lines(rows, metric)
    return lines


def reproduce(out_dir: Path, full: bool) -> list[str]:
    """Main-job step: every preset into ``out_dir/sim``; markdown lines for REPORT.md."""
    sim_dir = Path(out_dir) / "sim"
    lines = ["Synthetic capability continuum. Results: `sim/<preset>/results.csv` + "
             "`config.json`; figures are pure functions of those files (`figures/sim_*.py`).", "",
             "How to read: *theory mode* is the paper's linearised setting (identity Gram, "
             "gradient flow on each context's logits); *learning mode* trains one softmax "
             "regression shared by all contexts and evaluates on held-out contexts. Verdicts "
             "below are computed from the saved numbers, not written by hand. Argmax accuracy is "
             "scale-invariant, so near the uniform prior (s = 0) an objective that barely moves "
             "(−p, −p^10) can still score well on it; rᵀq (expected accuracy) shows the stall.",
             ""]
    for name in PRESETS:
        lines += run_preset(name, preset(name, full), sim_dir / name, sim_dir) + [""]
    return lines
