"""`probsft reproduce`: the main job (probsft.reproduce) — every default result, figure and report."""

from __future__ import annotations

from probsft.reproduce import STEPS


def add_parser(sub):
    p = sub.add_parser("reproduce", help="regenerate every default result, figure and REPORT.md")
    p.add_argument("--out", default="results",
                   help="output folder (default: results/ in the current folder); finished work "
                        "resumes")
    p.add_argument("--full", action="store_true", help="larger grids (more seeds/steps); slower")
    p.add_argument("--quick", action="store_true",
                   help="simulator only (with --only sim): small grids, about two minutes")
    p.add_argument("--only", nargs="+", metavar="AREA", choices=list(STEPS),
                   help=f"run only these areas ({', '.join(STEPS)})")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.reproduce import run_all

    from probsft.files import locked_output

    with locked_output(args.out, "--out"):
        report = run_all(args.out, args.full, args.only, quick=args.quick)
    print(f"wrote {report}")
    return 0
