"""The simulator's experiments: one registry entry each (configs, figures, verdicts), found by key.

    from probsft.sim.experiments import EXPERIMENTS, run
    exp = EXPERIMENTS["crossover"]
    run(exp, "default", out / "crossover")          # runs or resumes every variant, saves first
    exp.verdicts(out / "crossover")                 # [Verdict] from the saved files only

An :class:`Experiment` holds the paper's claim, ``runs(scale)`` -> {variant: config} (a SimConfig
sweep, an EscapeConfig or a GridConfig; learning-mode experiments have an ``sgd`` and an ``adam``
variant, both decided), the figure modules that draw it (``probsft.figures.<name>.draw``, called by
``probsft.reproduce.sim``: the library never imports figures) and ``verdicts(folder)``.
Scales: ``quick`` (tests; the whole registry in about two minutes), ``default`` (``probsft
reproduce``), ``full`` (more seeds and finer grids).

Verdict presets sit where the prior can matter: V >= 128 (one at V = 1024), fewer
training contexts than parameters (256 contexts for V·d = 4096 weights), and each verdict carries the
prior's contribution (``probsft.sim.verdicts``). The settings were fixed from those scales before any
run, not tuned to make a claim come out; the sensitivity grid (``grid``) shows where each claim holds.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

from probsft.config import load_config
from probsft.errors import UserError
from probsft.sim import analysis
from probsft.sim.config import SimConfig
from probsft.sim.escape import EscapeConfig, fit_slopes, read_escape, run_escape
from probsft.sim.grid import GridConfig, grid_verdicts, run_grid
from probsft.sim.phase import read_boundary, save_boundary
from probsft.sim.sweep import at_step, read_rows, run_sweep
from probsft.sim.verdicts import (Verdict, compare, label, outcome, paired, per_seed_best,
                                  prior_contribution)

SCALES = ("quick", "default", "full")
OPTIMIZER_LR = {"sgd": 2.0, "adam": 0.01}
CROSSOVER_OBJECTIVES = ("nll", "alpha(0.5)", "p", "nll@p>=0.2", "alpha(10)")
ALPHAS = (0.1, 0.2, 0.5, 1, 2, 5, 10)
THRESHOLD_OBJECTIVES = ("nll", "p", "nll@p>=0.2", "nll@p>=Q90", "nll@p<=Q10", "nll@p<=Q50")


@dataclasses.dataclass(frozen=True)
class Experiment:
    key: str
    claim: str
    runs: Callable[[str], dict]            # scale -> {variant: config}
    figures: tuple[str, ...]               # probsft.figures modules, each draw(run_dir, out, stem)
    verdicts: Callable[[Path], list[Verdict]]


def _pick(scale, quick, default, full):
    return {"quick": quick, "default": default, "full": full}[scale]


def _grid(n: int) -> tuple:
    return tuple(round(k / (n - 1), 4) for k in range(n))


def _learning(scale: str, **kw) -> dict:
    """{optimizer: SimConfig}: V = 128, d = 32, 256 training contexts, 200 full-batch steps."""
    base = dict(mode="learning", vocab_size=128, feature_dim=32, contexts=256, eval_contexts=1024,
                steps=_pick(scale, 100, 200, 200), noise_rates=(0.0, 0.2), dtype="float32",
                seeds=_pick(scale, (0, 1), (0, 1, 2), (0, 1, 2, 3, 4)))
    base.update(kw)
    return {opt: SimConfig(**{"optimizer": opt, "lr": OPTIMIZER_LR[opt], **base})
            for opt in OPTIMIZER_LR}


def _theory(scale: str, **kw) -> dict:
    base = dict(mode="theory", vocab_size=128, contexts=_pick(scale, 64, 256, 256), lr=0.1,
                steps=300, noise_rates=(0.0, 0.2),
                seeds=_pick(scale, (0,), (0, 1, 2), (0, 1, 2, 3, 4)))
    base.update(kw)
    return {"": SimConfig(**base)}


def _setting(cfg: SimConfig) -> str:
    return (f"{cfg.mode}, V={cfg.vocab_size}, {cfg.contexts} contexts, {cfg.steps} steps"
            + (f", {cfg.optimizer} lr {cfg.lr:g}" if cfg.mode == "learning" else f", T={cfg.horizon:g}"))


def variants(folder: Path):
    """[(variant name, its folder, its SimConfig rows)] of a saved sweep experiment."""
    out = []
    for cfg_path in sorted(Path(folder).glob("**/config.json")):
        if (cfg_path.parent / "results.csv").exists():
            cfg = load_config(SimConfig, cfg_path)
            name = cfg_path.parent.relative_to(folder).as_posix()
            out.append((name if name != "." else "", cfg_path.parent, cfg))
    return out


def _where(folder: Path, name: str) -> str:
    return Path(folder).name + (f"/{name}" if name else "")


def _metric(cfg: SimConfig) -> str:
    return "eval/acc" if cfg.mode == "learning" else "eval/expected_acc"


def _prior(rows, cfg: SimConfig) -> float:
    """The prior's contribution to held-out accuracy (learning mode); NaN in theory mode, which
    has no held-out contexts: each context's logits are fitted on their own, so clean NLL reaches
    its label whatever the prior and the statistic would not measure what the prior adds."""
    return prior_contribution(rows) if cfg.mode == "learning" else math.nan


# ----- verdicts ----------------------------------------------------------------------------------


def crossover_verdicts(folder) -> list[Verdict]:
    """Claim 1 (§6.4-6.5): under noise NLL beats −p at the weak end, −p beats NLL at the strong
    end; with clean labels NLL is at least as good as −p (an equivalence or a win)."""
    out = []
    for name, path, cfg in variants(folder):
        rows = at_step(read_rows(path / "results.csv"))
        metric = _metric(cfg)
        prior = _prior(rows, cfg)
        lo, hi = min(cfg.prior_strengths), max(cfg.prior_strengths)
        E = max(cfg.noise_rates)
        kw = dict(where=_where(folder, name), metric=metric, prior=prior, setting=_setting(cfg))
        out += [compare(rows, "weak end, noisy labels: NLL beats −p", better="nll", worse="p",
                        prior_strength=lo, noise_rate=E, **kw),
                compare(rows, "strong end, noisy labels: −p beats NLL", better="p", worse="nll",
                        prior_strength=hi, noise_rate=E, **kw)]
        out.append(compare(rows, "strong end, clean labels: NLL at least as good as −p",
                           better="nll", worse="p", prior_strength=hi, noise_rate=0.0,
                           at_least=True, **kw))
    return out


def fit_verdicts(folder) -> list[Verdict]:
    """Claim 5 (Fig. 6 right): the objective with the higher training-target p after training is
    also the held-out winner (NLL vs −p, noisy labels). Eq. 5's mean p is 1 − L₋ₚ, so part of the
    agreement is built in for −p."""
    out = []
    for name, path, cfg in variants(folder):
        if cfg.mode != "learning":
            continue
        rows = at_step(read_rows(path / "results.csv"))
        E = max(cfg.noise_rates)
        same, n = 0, 0
        for s in cfg.prior_strengths:
            acc, _ = analysis.winners_at(rows, "eval/acc", ("nll", "p"), s, E)
            fit, _ = analysis.winners_at(rows, "train/mean_p", ("nll", "p"), s, E)
            same, n = same + (acc == fit), n + 1
        frac = same / n
        prior = _prior(rows, cfg)
        res = "confirmed" if frac >= 0.8 else "refuted" if frac <= 0.5 else "inconclusive"
        out.append(Verdict("training fit follows the winner (NLL vs −p, noisy labels)",
                           _where(folder, name), f"same winner at {same}/{n} prior strengths",
                           label(res, prior), frac, prior_contribution=prior,
                           setting=_setting(cfg)))
    return out


def crossover_and_fit_verdicts(folder) -> list[Verdict]:
    return crossover_verdicts(folder) + fit_verdicts(folder)


def alpha_verdicts(folder) -> list[Verdict]:
    """Claim 3 (Fig. 6 left): the best α of (1 − p^α)/α rises with prior strength; NLL (α → 0)
    best at the weak end. Paired by seed: best α at the strong end minus at the weak end."""
    out = []
    for name, path, cfg in variants(folder):
        rows = at_step(read_rows(path / "results.csv"))
        metric = _metric(cfg)
        E = max(cfg.noise_rates)
        prior = _prior(rows, cfg)
        fam = [o for o in cfg.objectives if not math.isnan(analysis.alpha_of(o))]
        lo, hi = min(cfg.prior_strengths), max(cfg.prior_strengths)
        weak = per_seed_best(rows, metric, fam, analysis.alpha_of, prior_strength=lo, noise_rate=E)
        strong = per_seed_best(rows, metric, fam, analysis.alpha_of, prior_strength=hi,
                               noise_rate=E)
        log = lambda d: {k: math.log10(max(v, 0.05)) for k, v in d.items()}  # noqa: E731 (NLL=0.05)
        est, a, b, n = paired(log(strong), log(weak))
        best = analysis.best_alpha([r for r in rows if r["noise_rate"] == E], metric)
        trail = ", ".join(f"s={s:g}: {al:g}" for s, _, al in best)
        out.append(Verdict("best α rises with prior strength (noisy labels)", _where(folder, name),
                           f"seed-mean best α {trail} (NLL = 0); log10 best α strong − weak "
                           f"{est:+.2f}" + (f" [{a:+.2f}, {b:+.2f}]" if n > 1 else ""),
                           outcome(a, b, prior, margin=0.0), est, a, b, prior, _setting(cfg)))
    return out


def threshold_verdicts(folder) -> list[Verdict]:
    """Claim 4 (§5, Fig. 5): at the strong end under noise NLL·1{p≥0.2} and top-10%-only training
    beat full NLL; bottom-quantile-only training is worse than NLL."""
    out = []
    for name, path, cfg in variants(folder):
        rows = at_step(read_rows(path / "results.csv"))
        hi, E = max(cfg.prior_strengths), max(cfg.noise_rates)
        kw = dict(where=_where(folder, name), metric=_metric(cfg), setting=_setting(cfg),
                  prior=_prior(rows, cfg), prior_strength=hi, noise_rate=E)
        out += [compare(rows, "strong end: NLL·1{p≥0.2} beats NLL", better="nll@p>=0.2",
                        worse="nll", **kw),
                compare(rows, "strong end: top-10% only (NLL·1{p≥Q90}) beats NLL",
                        better="nll@p>=Q90", worse="nll", **kw),
                compare(rows, "strong end: bottom-10% only (NLL·1{p≤Q10}) is worse than NLL",
                        better="nll", worse="nll@p<=Q10", **kw)]
    return out


def mixed_verdicts(folder) -> list[Verdict]:
    """The weak-end stall under Adam, through relative weighting: in a batch that mixes easy
    (prior 1) and hard (prior 0) contexts, −p spends its step on the easy ones, so on the hard
    group NLL beats −p — also under Adam, which normalises the gradient's absolute size away."""
    out = []
    for name, path, cfg in variants(folder):
        rows = at_step(read_rows(path / "results.csv"))
        metric = "eval/acc_hard" if cfg.easy_frac > 0 else "eval/acc"
        group = "hard group of a mixed batch" if cfg.easy_frac > 0 else "a batch of hard contexts only"
        out.append(compare(rows, f"{group}, noisy labels: NLL beats −p on the hard contexts",
                           better="nll", worse="p", metric=metric, where=_where(folder, name),
                           prior=math.nan, setting=_setting(cfg) + f", easy_frac {cfg.easy_frac:g}",
                           prior_strength=min(cfg.prior_strengths), noise_rate=max(cfg.noise_rates)))
    return out


def phase_verdicts(folder) -> list[Verdict]:
    """Claim 2 (§2.4): the sign of the first-order rate difference at t = 0 predicts the winner of
    NLL vs −p. A statement about t → 0: agreement is reported against the horizon T."""
    out = []
    for name, path, cfg in variants(folder):
        rows = read_rows(path / "results.csv")
        curve = analysis.agreement_by_horizon(rows, cfg.lr)
        text = ", ".join(f"T={T:g}: {100 * a:.0f}%" for T, a, _ in curve)
        early = curve[0][1]
        out.append(Verdict("first-order sign predicts the NLL vs −p winner (as t → 0)",
                           _where(folder, name), f"agreement {text} ({curve[0][2]} cells each)",
                           "confirmed" if early >= 0.9 else "refuted" if early < 0.6 else
                           "inconclusive", early, setting=_setting(cfg)))
        final = at_step(rows)
        clean = [c for c in analysis.pairwise_agreement(final)[1] if c["noise_rate"] == 0.0]
        nll = sum(c["sim_winner"] == "nll" for c in clean)
        out.append(Verdict("clean labels: NLL at least as fast as −p (§6.4)", _where(folder, name),
                           f"NLL wins {nll}/{len(clean)} prior strengths at T={cfg.horizon:g}",
                           "confirmed" if nll == len(clean) else "refuted", nll / max(len(clean), 1),
                           setting=_setting(cfg)))
    return out


def escape_verdicts(folder) -> list[Verdict]:
    """Escape-time scaling from a near-uniform prior (our inference from the paper's W_f, not a
    claim the paper makes): −p t ∝ 1/p0, NLL t ≈ log(1/p0)."""
    sl = fit_slopes(read_escape(Path(folder) / "escape.csv"))
    where = Path(folder).name
    out = []
    if "p" in sl:
        x = sl["p"]["loglog"]
        out.append(Verdict("(inference) −p escapes in t ∝ 1/p0", where,
                           f"d log t / d log(1/p0) = {x:.3f}",
                           "confirmed" if abs(x - 1) < 0.15 else "refuted", x))
    if "nll" in sl:
        x = sl["nll"]["linlog"]
        out.append(Verdict("(inference) NLL escapes in t ≈ log(1/p0)", where,
                           f"d t / d log(1/p0) = {x:.3f}",
                           "confirmed" if abs(x - 1) < 0.25 else "refuted", x))
    return out


# ----- the registry ------------------------------------------------------------------------------


def _escape(scale):
    if scale == "quick":
        return {"": EscapeConfig(p0s=(1e-3, 3e-3, 1e-2, 3e-2, 0.1), vocab_size=2000, max_steps=3000)}
    if scale == "full":
        return {"": EscapeConfig(p0s=(1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
                                      0.2), max_steps=10000)}
    return {"": EscapeConfig(max_steps=5000)}


def _phase(scale):
    horizons = (0.3, 1, 3, 10, 30)
    steps = tuple(int(round(T / 0.1)) for T in horizons)
    n = _pick(scale, 5, 11, 21)
    return _theory(scale, objectives=("nll", "p"), prior_strengths=_grid(n),
                   noise_rates=tuple(round(k / (n - 1) * 0.5, 3) for k in range(n)),
                   contexts=_pick(scale, 64, 128, 256), seeds=_pick(scale, (0,), (0,), (0, 1, 2)),
                   steps=steps[-1], snapshots=steps[:-1])


def _alpha_objectives(scale):
    return ("nll",) + tuple(f"alpha({a})" for a in _pick(scale, (0.5, 1, 5), ALPHAS, ALPHAS))


def _mixed(scale):
    out = {}
    for frac, tag in ((0.0, "pure"), (0.5, "mixed")):
        for opt, cfg in _learning(scale, objectives=("nll", "alpha(0.5)", "p"),
                                  prior_strengths=(0.0,), easy_frac=frac).items():
            out[f"{opt}-{tag}"] = cfg
    return out


EXPERIMENTS: dict[str, Experiment] = {e.key: e for e in (
    Experiment("crossover", "claim 1: NLL wins at the weak end, −p at the strong end (noisy)",
               lambda sc: _learning(sc, objectives=CROSSOVER_OBJECTIVES,
                                    prior_strengths=_pick(sc, (0.0, 1.0), _grid(6), _grid(11))),
               ("sim_crossover", "sim_fit"), crossover_and_fit_verdicts),
    Experiment("crossover-v1024", "claim 1 at V = 1024",
               lambda sc: _learning(sc, objectives=("nll", "alpha(0.5)", "p"), vocab_size=1024,
                                    prior_strengths=_pick(sc, (0.0, 1.0), (0.0, 0.5, 1.0),
                                                          _grid(6)),
                                    seeds=_pick(sc, (0,), (0, 1, 2), (0, 1, 2, 3, 4)),
                                    eval_contexts=512, steps=_pick(sc, 50, 100, 200)),
               ("sim_crossover",), crossover_verdicts),
    Experiment("crossover-theory", "claim 1 in theory mode (identity Gram)",
               lambda sc: _theory(sc, objectives=CROSSOVER_OBJECTIVES,
                                  prior_strengths=_pick(sc, (0.0, 1.0), _grid(11), _grid(21))),
               ("sim_crossover",), crossover_verdicts),
    Experiment("phase", "claim 2: first-order E* boundary, agreement vs horizon",
               _phase, ("sim_phase",), phase_verdicts),
    Experiment("alpha", "claim 3: best α rises with prior strength",
               lambda sc: _learning(sc, objectives=_alpha_objectives(sc), noise_rates=(0.0, 0.2),
                                    prior_strengths=_pick(sc, (0.0, 1.0), _grid(5), _grid(11))),
               ("sim_alpha",), alpha_verdicts),
    Experiment("alpha-theory", "claim 3 in theory mode",
               lambda sc: _theory(sc, objectives=_alpha_objectives(sc),
                                  prior_strengths=_pick(sc, (0.0, 1.0), _grid(6), _grid(11))),
               ("sim_alpha",), alpha_verdicts),
    Experiment("threshold", "claim 4: thresholding at the strong end",
               lambda sc: _learning(sc, objectives=THRESHOLD_OBJECTIVES,
                                    prior_strengths=_pick(sc, (0.0, 1.0), (0.0, 0.5, 1.0), _grid(9))),
               ("sim_threshold",), threshold_verdicts),
    Experiment("mixed", "weak-end stall through relative weighting in mixed batches",
               _mixed, ("sim_mixed",), mixed_verdicts),
    Experiment("escape", "(inference) escape time from a near-uniform prior",
               _escape, ("sim_escape",), escape_verdicts),
    Experiment("grid", "where each claim holds: V × contexts × steps × optimizer",
               lambda sc: {"": GridConfig.at_scale(sc)}, ("sim_grid",), grid_verdicts),
)}


def experiment(key: str) -> Experiment:
    if key not in EXPERIMENTS:
        raise UserError(f"unknown experiment {key!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[key]


def preset(key: str, scale: str = "default"):
    """The config of a one-variant experiment, or {variant: config} when it has several."""
    runs = experiment(key).runs(scale)
    return runs[""] if list(runs) == [""] else runs


def run_config(cfg, folder: Path, progress: bool = True) -> None:
    """Run or resume one config into ``folder`` (results saved before anything reads them)."""
    if isinstance(cfg, EscapeConfig):
        run_escape(cfg, folder, progress)
    elif isinstance(cfg, GridConfig):
        run_grid(cfg, folder, progress)
    else:
        run_sweep(cfg, folder, progress)
        if cfg.mode == "theory" and set(cfg.objectives) >= {"nll", "p"}:
            save_boundary(cfg, folder)


def run(exp: Experiment, scale: str, folder, progress: bool = True) -> list[Path]:
    """Run or resume every variant of ``exp`` into ``folder`` (``folder/<variant>``); their folders."""
    if scale not in SCALES:
        raise UserError(f"scale must be one of {SCALES}, got {scale!r}")
    folders = []
    for name, cfg in exp.runs(scale).items():
        path = Path(folder) / name if name else Path(folder)
        run_config(cfg, path, progress)
        folders.append(path)
    return folders
