"""`probsft validate`: the capability-continuum experiment (probsft.validate.experiment)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from probsft.commands import positive_float, positive_int


def add_parser(sub):
    p = sub.add_parser("validate", help="probe, fine-tune with each objective and compare with the "
                                        "theory's predicted ordering, per task")
    p.add_argument("--full", action="store_true", help="more seeds/steps/problems (slow)")
    p.add_argument("--out", default=None, help="results folder, resumed if present (default: "
                   "runs/validate, or runs/validate_full with --full)")
    p.add_argument("--model", default=None, help="backbone folder (default: the shipped one)")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of spell_backward letter_jumble figlet")
    p.add_argument("--steps", type=positive_int, default=None, help="override fine-tune steps")
    p.add_argument("--seeds", type=positive_int, default=None, help="override the number of seeds")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="override the fine-tune learning rate (reduced and full grids: 3e-4)")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.files import locked_output
    from probsft.reproduce.validate import run as run_grid, verdict_lines
    from probsft.validate import experiment as ex

    cfg = ex.FULL if args.full else ex.REDUCED
    over = {"tasks": tuple(args.tasks)} if args.tasks else {}
    if args.steps:
        over["steps"] = args.steps
    if args.seeds:
        over["seeds"] = tuple(range(args.seeds))
    if args.lr:
        over["lr"] = args.lr
    cfg = dataclasses.replace(cfg, **over)
    out = Path(args.out) if args.out else Path("runs") / ex.folder(args.full)
    if args.model:
        from probsft.validate.loading import check_model_path

        check_model_path(args.model)                 # before the lock and the work
    with locked_output(out, "--out"):
        table, verdicts, _ = run_grid(cfg, out, args.model)
    print("\n".join(table + [""] + verdict_lines(verdicts)))
    return 0
