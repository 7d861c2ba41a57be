"""`probsft weights SPEC... --out DIR`: the gradient-weight plot W_f(p) (paper Fig. 3) and table.

Writes DIR/weights_curves.csv (W_f per objective on a p grid) and DIR/weights.csv + weights.md
(formula, s_f, W_f, peak, class), then DIR/weights.png + .svg drawn from those files. With no SPEC
the paper's Fig. 3 set is drawn; any user expression may be added, e.g. `probsft weights nll p
'(1-p**3)/3' --out plots`.
"""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("weights", help="plot the gradient weights W_f(p) (Fig. 3) and their table")
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help="objective specs (default: the paper's Fig. 3 set)")
    p.add_argument("--out", default="runs/weights", help="output folder (default: runs/weights)")
    p.add_argument("--normalise", action=__import__("argparse").BooleanOptionalAction, default=True,
                   help="scale each curve to a maximum of 1 (default: on)")
    p.add_argument("--tau", type=float, default=0.5, help="Def. 3.3 class threshold (default 0.5)")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.theory.spec import parse
    from probsft.theory.tables import FIG3

    specs = [parse(s).spec for s in args.specs or FIG3]   # a bad spec fails before any import
    from probsft.reproduce.theory import render

    for path in render(specs, args.out, normalise=args.normalise, tau=args.tau):
        print(f"wrote {path}")
    return 0
