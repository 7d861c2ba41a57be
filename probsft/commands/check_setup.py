"""`probsft check-setup`: three optimizer steps of a tiny model inside an SFT framework, through
probsft's adapter, before a long job (probsft.integrations.setup_check).

    probsft check-setup --framework swift --spec "-p" [--json check.json]

Reports whether the framework's loss, its scaling under gradient accumulation and the fused path are
what probsft computes; exit code 0 when all three hold, 1 otherwise.
"""

from __future__ import annotations


def add_parser(sub):
    from probsft.integrations.setup_check import FRAMEWORKS

    p = sub.add_parser("check-setup", help="check the objective inside an SFT framework on a tiny "
                                           "model (loss, accumulation scaling, fused path)")
    p.add_argument("--framework", required=True, choices=sorted(FRAMEWORKS))
    p.add_argument("--spec", default="-p", help="the objective spec to check (default -p)")
    p.add_argument("--workdir", default=None,
                   help="folder for the tiny model and the runs (default: a temporary one)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="print the result as JSON (or write it to PATH, atomically)")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import tempfile
    from pathlib import Path

    from probsft.commands import emit
    from probsft.files import output_file
    from probsft.integrations.setup_check import report, run_check

    if args.json and args.json != "-":
        output_file(args.json, "--json")
    with tempfile.TemporaryDirectory(prefix="probsft-check-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        measured, steps = run_check(args.framework, args.spec, workdir)
    result = {"framework": args.framework, "spec": args.spec, "ok": all(ok for _, ok, _ in steps),
              "steps": {name: {"ok": ok, "detail": detail} for name, ok, detail in steps},
              "measured": dataclasses.asdict(measured)}
    emit(result, report(args.framework, args.spec, measured, steps), args.json)
    return 0 if result["ok"] else 1
