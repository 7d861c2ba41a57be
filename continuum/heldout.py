"""The registered held-out test of the rule fitted on the within-task dial (issue 27).

The rule: probsft.continuum.rule's ``band`` rule on the fit dial's measured curve (position ×
supervision × optimizer → objective; the Δs of the dial's cells smoothed along probe p with the
kernel width chosen there by leave-one-position-out), frozen as a curve file (:data:`FROZEN`)
whose sha256 is committed (:data:`FROZEN_SHA256`) before any held-out run. The held-out data: the
dial of a backbone built after the freeze (probsft.continuum.dial.DIALS["heldout"]: a new seed,
tasks the rule never saw, and one it saw, on the new backbone).

Scoring (:func:`registered_test`), cell by cell of the held-out grid, each policy a hit when its objective
lies within the tie band of the cell's best (probsft.continuum.cells.score):

* the rule, reading the cell's probe p;
* the lookup by noise kind (the frozen curve at an infinite width: no position);
* every constant ("always X" for each measured candidate), among them always NLL, always DFT and
  always DEFT; *the best constant* is the one with the most hits on the held-out informative
  cells, chosen after seeing them (the strongest position-blind competitor: conservative for the
  rule), and the fit constant (the most hits on the fit dial's cells) is reported beside it.

A cell is *informative* when at least one candidate misses there (every objective at the floor,
or all at the ceiling, is a hit for any choice); the primary comparison uses those cells only.
Δ = hit rate(rule) − hit rate(best constant), paired over the informative cells, 95% interval by
a bootstrap over positions (probsft.continuum.position). Verdict (:data:`TARGET` = 10 points):
**confirmed** when Δ ≥ 10 and the interval excludes 0; **refuted** when the interval's upper end
is below 10 (an advantage of 10 points is excluded); **inconclusive** otherwise.

    python -m probsft.continuum.heldout freeze      # writes FROZEN from results/validate_dial
    python -m probsft.continuum.heldout score       # the registered test on results/validate_dial_heldout
"""

from __future__ import annotations

import math
from pathlib import Path

from probsft.continuum.cells import cell_groups
from probsft.continuum.cells import score as cell_score
from probsft.continuum.position import paired_difference, percent, says_something
from probsft.continuum.rule import RULE, decide, dose_response
from probsft.errors import UserError
from probsft.paths import DATA

TARGET = 10.0                                  # points of hit rate the rule must gain
FROZEN = DATA / "curves" / "dial.json"         # the frozen rule: the fit dial's curve
FROZEN_SHA256 = "d49268a192e68b81563d81613e12ff636263dceddce59da341b296e863f9ee92"


def _policy_hits(groups, curve, rule: str, width: float) -> dict:
    """{cell key: (hit, objective)} of the rule read at ``width`` on the frozen curve's cells."""
    out = {}
    for key, g in groups.items():
        _, sup, opt = key
        measured = dose_response(list(curve.cells), g["nll"]["probe_answer_p"], sup, opt,
                                 bandwidth=width, margin=curve.margin)
        if not measured:
            continue
        rec = decide(measured, margin=curve.margin, rule=rule)["objective"]
        s = cell_score(g, rec, curve.margin)
        if s is not None:
            out[key] = (s[0], rec)
    return out


def _constant_hits(cells, margin: float) -> dict[str, dict]:
    """{spec: {cell key: hit}} of always answering spec, on the cells where it was measured."""
    groups = cell_groups(cells)
    specs = sorted({s for g in groups.values() for s in g})
    return {s: {k: cell_score(g, s, margin)[0] for k, g in groups.items() if s in g} for s in specs}


def verdict(delta: float, ci) -> str:
    lo, hi = ci
    if math.isnan(delta) or math.isnan(lo):
        return "inconclusive"
    if delta >= TARGET and lo > 0:
        return "confirmed"
    if hi < TARGET:
        return "refuted"
    return "inconclusive"


def registered_test(curve, cells, rule: str = RULE, fit_cells=None, margin: float | None = None) -> dict:
    """The registered comparison on held-out ``cells`` (see the module docstring)."""
    margin = curve.margin if margin is None else margin
    groups = cell_groups(cells)
    says = {k: says_something(g, margin) for k, g in groups.items()}
    rule_hits = _policy_hits(groups, curve, rule, curve.width(rule))
    lookup_hits = _policy_hits(groups, curve, rule, math.inf)
    consts = _constant_hits(cells, margin)
    keys = [k for k in groups if k in rule_hits and k in lookup_hits]
    informative = [k for k in keys if says[k]]

    def summary(hit_of):
        return {"all": percent([hit_of(k) for k in keys]),
                "informative": percent([hit_of(k) for k in informative])}

    const_rates = {s: summary(lambda k, s=s: h.get(k, False)) for s, h in consts.items()}
    best = max(const_rates, key=lambda s: (const_rates[s]["informative"], s == "nll"))
    fit_const = None
    if fit_cells is not None:
        fit = _constant_hits(fit_cells, margin)
        fit_const = max(fit, key=lambda s: (sum(fit[s].values()), s == "nll"))

    def paired(hit_a, hit_b):
        delta, (lo, hi) = paired_difference(informative, hit_a, hit_b)
        return {"delta": delta, "ci": [lo, hi]}

    rule_hit = lambda k: rule_hits[k][0]
    vs_best = paired(rule_hit, lambda k: consts[best].get(k, False))
    out = {"rule": rule, "width": curve.width(rule), "cells": len(keys),
           "informative_cells": len(informative), "positions": len({k[0] for k in keys}),
           "hit_rates": {"rule": summary(rule_hit), "lookup": summary(lambda k: lookup_hits[k][0]),
                         **{f"always {s}": r for s, r in const_rates.items()}},
           "best_constant": best, "fit_constant": fit_const,
           "vs_best_constant": {**vs_best, "verdict": verdict(vs_best["delta"], vs_best["ci"])},
           "vs_lookup": paired(rule_hit, lambda k: lookup_hits[k][0]),
           "picks": {"/".join(map(str, k)): rule_hits[k][1] for k in keys}}
    for name in ("deft", "nll", "dft") + ((fit_const,) if fit_const else ()):
        if name in consts:
            out[f"vs_always_{name}"] = paired(rule_hit, lambda k, n=name: consts[n].get(k, False))
    return out


def freeze(fit_folder, path=FROZEN) -> str:
    """Write the fit dial's curve (probsft.continuum.curve.build on ``fit_folder/paired.csv``) to
    ``path``; its sha256 (to be committed as :data:`FROZEN_SHA256`)."""
    from probsft.continuum import curve as cv
    from probsft.files import sha256_file

    cv.save(cv.build([Path(fit_folder) / "paired.csv"]), path)
    return sha256_file(path)


def frozen(path=FROZEN):
    """The frozen rule's curve, refused when its bytes are not the registered ones."""
    from probsft.continuum import curve as cv
    from probsft.files import sha256_file

    if FROZEN_SHA256 is None:
        raise UserError("no rule is registered yet (FROZEN_SHA256 is unset): freeze one first")
    got = sha256_file(path)
    if got != FROZEN_SHA256:
        raise UserError(f"{path}: sha256 {got[:12]}… is not the registered {FROZEN_SHA256[:12]}…;"
                        " the frozen rule changed after registration")
    return cv.load(path)


def main(argv=None) -> None:
    import argparse
    import json

    from probsft.files import atomic_write_json, rounded

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.heldout",
                                 description="freeze the dial's rule, or score it held out")
    ap.add_argument("action", choices=("freeze", "score"))
    ap.add_argument("--fit", default="results/validate_dial", help="the fit dial's results folder")
    ap.add_argument("--heldout", default="results/validate_dial_heldout",
                    help="the held-out dial's results folder")
    args = ap.parse_args(argv)
    try:
        if args.action == "freeze":
            print(f"froze {FROZEN}: sha256 {freeze(args.fit)}")
            return
        from probsft.continuum.cells import read_paired

        result = rounded(registered_test(frozen(), read_paired(Path(args.heldout) / "paired.csv"),
                                         fit_cells=read_paired(Path(args.fit) / "paired.csv")))
        atomic_write_json(Path(args.heldout) / "registered_test.json", result, indent=1)
        print(json.dumps({k: v for k, v in result.items() if k != "picks"}, indent=1))
    except (UserError, OSError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
