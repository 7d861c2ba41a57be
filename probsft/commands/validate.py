"""`probsft validate`: the capability continuum as a dose–response curve (probsft.continuum.experiment)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from probsft.commands import positive_float, positive_int


def add_parser(sub):
    p = sub.add_parser("validate", help="probe the dial's positions, fine-tune with each objective "
                                        "(paired seeds) and test the theory's predicted sign")
    p.add_argument("--full", action="store_true", help="every objective, optimizer and supervision "
                   "kind (slow; resumable)")
    p.add_argument("--out", default=None, help="results folder, resumed if present (default: "
                   "runs/validate, or runs/validate_full with --full)")
    p.add_argument("--model", default=None, help="backbone folder (default: the shipped one)")
    p.add_argument("--dial", default=None, metavar="KEY",
                   help="run (or resume) a registered within-task dial instead "
                        "(probsft.continuum.dial.DIALS: fit, heldout, medium): each task at the "
                        "checkpoints of one build that its build probe places near p 0.1 … 0.85; "
                        "--model is then the dial build folder (default models/<dial>), --out the "
                        "results folder (default results/<the dial's folder>); other flags do not apply; "
                        "after the medium or fit dial the two sizes' crossovers are compared "
                        "(probsft.continuum.sizes) when both are analysed")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of the dial's positions")
    p.add_argument("--steps", type=positive_int, default=None, help="override fine-tune steps")
    p.add_argument("--seeds", type=positive_int, default=None, help="override the number of seeds")
    p.add_argument("--objectives", nargs="+", default=None, metavar="SPEC",
                   help="override the objectives (nll is the paired reference and must be one)")
    p.add_argument("--optimizers", nargs="+", default=None, choices=("adamw", "sgd"),
                   help="override the optimizers")
    p.add_argument("--supervision", nargs="+", default=None,
                   choices=("clean", "token", "answer", "plausible"),
                   help="override the supervision kinds")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="override the AdamW fine-tune learning rate (default 3e-4)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes running the grid, one torch thread each (default: the CPUs "
                        "this process may use, at most 8); the results do not depend on it")
    p.set_defaults(func=run)


def run_dial(args) -> int:
    from probsft.continuum import dial as dl
    from probsft.continuum import experiment as ex
    from probsft.files import locked_output

    d = dl.dial(args.dial)
    fixed = [f"--{f}" for f in ("full", "tasks", "steps", "seeds", "objectives", "optimizers",
                                "supervision", "lr") if getattr(args, f)]
    if fixed:
        from probsft.errors import UserError

        raise UserError(f"--dial runs the registered dial's own grid; {', '.join(fixed)} do(es) "
                        "not apply")
    out = Path(args.out) if args.out else Path("results") / d.folder
    d.checkpoints(args.model)                         # a missing build: one line, before the lock
    with locked_output(out, "--out"):
        dl.run(d, out, args.model, workers=args.workers or ex.default_workers())
        result = dl.analyse(d, out, args.model)
    for c in result["task_crossovers"]:
        where = "no crossing" if c["p"] is None else f"crossover p {c['p']:.2f}"
        print(f"{c['task']} {c['supervision']}/{c['optimizer']}: {where}")
    print(f"wrote {out}/paired.csv, verdicts.json, positions.json")
    from probsft.continuum import sizes

    if args.dial in sizes.PAIR and not args.out and all(
            (Path("results") / dl.DIALS[k].folder / "verdicts.json").exists() for k in sizes.PAIR):
        print(f"wrote {sizes.write(Path('results'))} (the crossover at two sizes)")
    return 0


def run(args) -> int:
    if args.dial:
        return run_dial(args)
    from probsft.files import locked_output
    from probsft.reproduce.validate import report_lines, run as run_grid
    from probsft.continuum import experiment as ex
    from probsft.continuum.grids import grid

    cfg = ex.FULL if args.full else ex.REDUCED
    over = {"tasks": tuple(args.tasks)} if args.tasks else {}
    for axis in ("objectives", "optimizers", "supervision"):
        if getattr(args, axis):
            over[axis] = tuple(getattr(args, axis))
    if args.steps:
        over["steps"] = args.steps
    if args.seeds:
        over["seeds"] = tuple(range(args.seeds))
    if args.lr:
        over["lr"] = args.lr
    cfg = dataclasses.replace(cfg, **over)
    out = Path(args.out) if args.out else Path("runs") / grid("full" if args.full else "reduced").folder
    if args.model:
        from probsft.validate.loading import check_model_path

        check_model_path(args.model)                 # before the lock and the work
    with locked_output(out, "--out"):
        result, _ = run_grid(cfg, out, args.model, workers=args.workers or ex.default_workers())
    print("\n".join(report_lines(result, cfg, ex.read_rows(out / "results.csv"),
                                 "probsft validate" + (" --full" if args.full else ""))))
    return 0
