"""The within-task dial: the same task at several capability positions (checkpoints of one run).

Every position of the registered grids (probsft.continuum.grids) is a different task, so a
position's probe p is confounded with the task's identity. Here one pretraining run is read at
several points of its dial (`probsft backbone build --dial-steps 600 --save-at ...`: the model is
saved, with its build probe, at dial steps 100, 150, …, 600), and each task is fine-tuned from
the checkpoints at which its build probe answer p lies nearest :data:`TARGETS` (chosen by that
probe alone, before any fine-tune; probsft.validate.backbone.positions_near). A position is
``task@step``. Caveat: a later checkpoint has also seen more of the other tasks and has more
general competence, not only more of the task's own documents.

Each checkpoint's runs are an ordinary continuum grid (probsft.continuum.experiment, paired seeds,
its own folder ``<out>/step_<k>/``, resumable run by run; the seeds run in two passes, the first
two seeds of every position first, so an interrupted dial holds complete paired cells);
:func:`rows` merges them and :func:`analyse` writes ``paired.csv`` and ``verdicts.json`` as every
grid does, plus the −p − NLL crossover located within each task (:func:`task_crossovers`).

    probsft validate --dial KEY [--workers N]          # run (or resume) and analyse
    python -m probsft.continuum.dial positions|run|analyse [--dial fit] [--workers N]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from probsft.continuum import experiment as ex
from probsft.errors import UserError
from probsft.paths import MODELS

TARGETS = (0.1, 0.3, 0.5, 0.7, 0.85)        # build-probe answer p of a task's positions
DIAL_STEPS = 600
SAVE_AT = tuple(range(100, DIAL_STEPS + 1, 50))
# the candidates: NLL, the prior-leaning ones, the adaptive ones, and the ecosystem's default
OBJECTIVES = ("nll", "p", "alpha(0.1)", "dft", "deft", "alpha(auto)")
CONFIG = dataclasses.replace(ex.FULL, objectives=OBJECTIVES, supervision=("clean", "token", "answer"),
                             seeds=(0, 1, 2, 3))
SEP = "@"
# The size comparison's reduced grid (issue 24; probsft.continuum.sizes): a run on the 8.9M
# backbone takes about 17 s at one thread, ~4x the tiny's
SIZE_CONFIG = dataclasses.replace(CONFIG, objectives=("nll", "p", "alpha(0.1)", "deft"),
                                  optimizers=("adamw",), supervision=("clean", "token"))


@dataclasses.dataclass(frozen=True)
class Dial:
    """One dial experiment: a backbone build read at checkpoints, its tasks, their grid."""

    key: str
    model: str                              # models/<model>: the build with its dial_step_<k>/
    build_seed: int
    tasks: tuple[str, ...]
    folder: str                             # results/<folder>
    config: ex.ExperimentConfig = CONFIG
    targets: tuple[float, ...] = TARGETS
    title: str = ""
    # more tasks, taken in this order when they pass :func:`spans` on this build's probe, until
    # ``take`` of them are in (a held-out build's dial may take weakly: registered before it ran)
    candidates: tuple[str, ...] = ()
    take: int = 0
    build_threads: int | None = None        # `--threads` of the build (None: the default, 1)
    size: str = "tiny"                      # `--size` of the build (validate.backbone.SIZES)
    save_at: tuple[int, ...] = SAVE_AT      # the dial steps saved (the candidate positions)

    @property
    def model_path(self) -> Path:
        return MODELS / self.model

    def build_command(self) -> str:
        threads = f" --threads {self.build_threads}" if self.build_threads else ""
        size = "" if self.size == "tiny" else f" --size {self.size}"
        return (f"probsft backbone build{size} --seed {self.build_seed} --dial-steps {DIAL_STEPS} "
                f"--save-at {' '.join(map(str, self.save_at))}{threads} --out models/{self.model}")

    def command(self) -> str:
        return f"probsft validate --dial {self.key}"

    def checkpoints(self, model_path=None) -> dict:
        """{step: {task: {answer_p, exact_match}}}: the build probe at each saved dial step."""
        path = Path(model_path or self.model_path) / "build.json"
        if not path.exists():
            raise UserError(f"no dial build at {path.parent}; build it with `{self.build_command()}`")
        ck = json.loads(path.read_text()).get("checkpoints")
        if not ck:
            raise UserError(f"{path}: the build saved no checkpoints (--save-at)")
        return {int(k): v for k, v in ck.items()}

    def all_tasks(self, checkpoints: dict) -> tuple[str, ...]:
        """The fixed tasks, then the first ``take`` candidates whose positions span the continuum
        on this build's probe ``checkpoints`` (:func:`spans`); fewer when not enough pass."""
        ok = [t for t in self.candidates
              if spans(positions_of(checkpoints, (t,), self.targets), checkpoints)]
        return self.tasks + tuple(ok[:self.take])

    def positions(self, model_path=None) -> list[tuple[str, int]]:
        """[(task, step)]: per task, the steps whose build probe p lies nearest the targets."""
        ck = self.checkpoints(model_path)
        return positions_of(ck, self.all_tasks(ck), self.targets)

    def by_step(self, model_path=None) -> dict[int, tuple[str, ...]]:
        """{step: tasks fine-tuned from that checkpoint}, steps ascending."""
        out: dict[int, list[str]] = {}
        for task, step in self.positions(model_path):
            out.setdefault(step, []).append(task)
        return {k: tuple(out[k]) for k in sorted(out)}


def positions_of(checkpoints: dict, tasks, targets=TARGETS) -> list[tuple[str, int]]:
    """Per task, one distinct checkpoint step per target: the step whose probe answer p lies
    nearest (probsft.validate.backbone.positions_near over steps instead of tasks)."""
    from probsft.validate.backbone import positions_near

    out = []
    for task in tasks:
        by_step = {k: v[task] for k, v in checkpoints.items() if task in v}
        if len(by_step) < len(targets):
            raise UserError(f"{task}: {len(by_step)} checkpoints for {len(targets)} targets")
        out += [(task, k) for k in sorted(positions_near(by_step, targets))]
    return out


SPAN = (0.2, 0.7)          # a task spans the continuum: its lowest position <= 0.2, highest >= 0.7


def spans(positions, checkpoints) -> bool:
    """Whether a task's positions reach both ends of :data:`SPAN` by build probe p."""
    ps = [checkpoints[k][t]["answer_p"] for t, k in positions]
    return min(ps) <= SPAN[0] and max(ps) >= SPAN[1]


def position_name(task: str, step: int) -> str:
    return f"{task}{SEP}{step}"


def task_of(position: str) -> str:
    """The task of a position (``t_rol@250`` -> ``t_rol``; a plain task name is its own task)."""
    return position.split(SEP, 1)[0]


def run(dial: Dial, out: Path, model_path=None, workers: int = 1, progress: bool = True) -> Path:
    """Run (or resume) every checkpoint's grid into ``out/step_<k>``, the first two seeds of
    every position first; returns ``out``."""
    model_path = Path(model_path or dial.model_path)
    steps = dial.by_step(model_path)
    cfg = dial.config
    for seeds in dict.fromkeys((cfg.seeds[:2], cfg.seeds)):
        for step, tasks in steps.items():
            ex.run_grid(dataclasses.replace(cfg, tasks=tasks, seeds=seeds), Path(out) / f"step_{step}",
                        model_path / f"dial_step_{step}", progress=progress, workers=workers)
    return Path(out)


def build_record(dial: Dial, out: Path, model_path=None) -> dict:
    """{"build": command, "positions": [...], "checkpoints": the build probe}: each position with
    its build probe p and checkpoint sha256, read from the build when it is there, else as
    ``analyse`` saved it in ``out/positions.json`` (a fresh clone has the results, not the
    checkpoints)."""
    saved = Path(out) / "positions.json"
    if not (Path(model_path or dial.model_path) / "build.json").exists() and saved.exists():
        return {**json.loads(saved.read_text()), "build": dial.build_command()}
    ck = dial.checkpoints(model_path)
    positions = []
    for task, step in positions_of(ck, dial.all_tasks(ck), dial.targets):
        cfg = Path(out) / f"step_{step}" / "config.json"
        sha = json.loads(cfg.read_text())["model_sha256"] if cfg.exists() else None
        positions.append({"position": position_name(task, step), "task": task, "step": step,
                          "build_answer_p": ck[step][task]["answer_p"], "model_sha256": sha})
    return {"build": dial.build_command(), "positions": positions, "checkpoints": ck}


def rows(out: Path, positions) -> list[dict]:
    """Every checkpoint's saved rows at ``positions`` (:func:`build_record`), each renamed
    ``task@step`` (a checkpoint folder's other tasks are left out)."""
    keep = {(p["task"], p["step"]) for p in positions}
    merged = []
    for step in sorted({p["step"] for p in positions}):
        for r in ex.read_rows(Path(out) / f"step_{step}" / "results.csv"):
            if (r["position"], step) in keep:
                merged.append({**r, "position": position_name(r["position"], step)})
    return merged


def task_crossovers(cells) -> list[dict]:
    """The −p − NLL crossover located within each task, per supervision and optimizer
    (probsft.validate.stats.crossover on the task's positions: isotonic root of the mean Δ along
    probe p, bootstrap-over-seeds 95% CI)."""
    from probsft.validate.stats import crossover

    groups: dict[tuple, list] = {}
    for c in cells:
        if c["objective"] == "p":
            groups.setdefault((task_of(c["position"]), c["supervision"], c["optimizer"]),
                              []).append(c)
    out = []
    for (task, sup, opt), cs in sorted(groups.items()):
        if len(cs) < 2:
            continue
        cs.sort(key=lambda c: c["probe_answer_p"])
        S = min(len(c["per_seed"]) for c in cs)
        x = crossover([c["probe_answer_p"] for c in cs], [c["per_seed"][:S] for c in cs])
        out.append({"task": task, "supervision": sup, "optimizer": opt, "positions": len(cs),
                    "p_range": [cs[0]["probe_answer_p"], cs[-1]["probe_answer_p"]],
                    "deltas": [c["delta"] for c in cs], **x})
    return out


def crossover_moves(crossings: list[dict]) -> dict:
    """Does the crossover move between tasks? Per (supervision, optimizer): the tasks with a
    crossing and a CI; "moves" when two tasks' CIs are disjoint, "not shown" when every pair
    overlaps, "cannot tell" with fewer than two located crossings."""
    out = {}
    for key in dict.fromkeys((c["supervision"], c["optimizer"]) for c in crossings):
        located = [c for c in crossings if (c["supervision"], c["optimizer"]) == key
                   and c["p"] is not None and c["ci"] is not None]
        if len(located) < 2:
            out["/".join(key)] = "cannot tell"
            continue
        disjoint = any(a["ci"][1] < b["ci"][0] or b["ci"][1] < a["ci"][0]
                       for i, a in enumerate(located) for b in located[i + 1:])
        out["/".join(key)] = "moves" if disjoint else "not shown"
    return out


def analyse(dial: Dial, out: Path, model_path=None) -> dict:
    """Merge the checkpoints' rows, write ``out/paired.csv`` and ``out/verdicts.json`` (with the
    per-task crossovers), and return the analysis."""
    from probsft.continuum.analysis import write_analysis
    from probsft.files import atomic_write_json, rounded

    record = build_record(dial, out, model_path)
    merged = rows(out, record["positions"])
    if not merged:
        raise UserError(f"no finished runs under {out}; run `{dial.command()}` first")
    atomic_write_json(Path(out) / "positions.json", record, indent=1)
    result = write_analysis(merged, Path(out))
    result["task_crossovers"] = rounded(task_crossovers(result["cells"]))
    result["crossover_moves"] = crossover_moves(result["task_crossovers"])
    atomic_write_json(Path(out) / "verdicts.json", result, indent=1)
    return result


DIALS: dict[str, Dial] = {d.key: d for d in (
    # the seed-0 run (the shipped backbone's stage 1), its dial continued to 600 steps
    Dial("fit", "dial", 0, ("t_rol", "t_swp", "t_nov"), "validate_dial",
         title="The within-task dial: three tasks at five positions each"),
    # registered before it was built (probsft.continuum.heldout): a new seed, and the first two
    # tasks the rule never saw that span the continuum on its build probe
    Dial("heldout", "dial_heldout", 5, (), "validate_dial_heldout",
         candidates=("t_sh2", "t_ror", "t_sh1", "t_srt", "t_cpy"), take=2, build_threads=2,
         title="The registered held-out dial: a new seed, two unseen tasks"),
    # the medium backbone (issue 24), registered before its dial's runs: the first two of the fit
    # dial's tasks that span the continuum on its build probe, steps saved from 25 (a larger
    # model may reach the targets earlier); the sizes comparison reads it beside "fit"
    Dial("medium", "backbone_medium", 0, (), "validate_dial_medium", config=SIZE_CONFIG,
         candidates=("t_rol", "t_swp", "t_nov"), take=2, size="medium",
         save_at=(25, 50, 75, *range(100, DIAL_STEPS + 1, 50)),
         title="The within-task dial on the medium backbone (8.9M parameters)"),
)}


def dial(key: str) -> Dial:
    if key not in DIALS:
        raise UserError(f"unknown dial {key!r}; registered: {', '.join(DIALS)}")
    return DIALS[key]


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.dial", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("action", choices=("positions", "run", "analyse"))
    ap.add_argument("--dial", default="fit", help=f"the registered dial ({', '.join(DIALS)})")
    ap.add_argument("--model", default=None, help="the dial build folder (default models/<dial>)")
    ap.add_argument("--out", default=None, help="results folder (default results/<folder>)")
    ap.add_argument("--workers", type=int, default=None, help="grid processes (default: CPUs, <= 8)")
    args = ap.parse_args(argv)
    try:
        d = dial(args.dial)
        out = Path(args.out or Path("results") / d.folder)
        if args.action == "positions":
            ck = d.checkpoints(args.model)
            for task, step in d.positions(args.model):
                print(f"{position_name(task, step)}\tbuild probe p {ck[step][task]['answer_p']:.3f}")
        elif args.action == "run":
            run(d, out, args.model, workers=args.workers or ex.default_workers())
            analyse(d, out, args.model)
        else:
            res = analyse(d, out, args.model)
            for c in res["task_crossovers"]:
                print(f"{c['task']} {c['supervision']}/{c['optimizer']}: crossover {c['p']} "
                      f"CI {c['ci']}")
    except (UserError, ex.ConfigError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
