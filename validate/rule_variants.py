"""Rule variants tried on the pooled grids and not adopted (README, "recommend"): scored by the same
nested leave-one-position-out as ``python -m probsft.validate.recommend ... --lopo``, so they can be
compared with the registered rules (band, delta) on equal terms.

* ``pooled``: the band rule deciding a noisy cell from every noisy kind (token, whole-answer,
  plausible) of the same optimizer, instead of its own kind only;
* ``regret<C>``: the objective of least kernel-weighted regret (the position's best Δ minus its Δ)
  capped at C points (the band rule is regret capped at the margin and thresholded; delta is the
  uncapped mean);
* ``minimax``: the objective of least worst-case regret over the positions (ties: the band share).

    python -m probsft.validate.rule_variants results/validate_full/paired.csv \\
        results/validate_b/paired.csv results/validate_c/paired.csv results/validate_d/paired.csv
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from probsft.validate import recommend as R

NOISY = ("token", "answer", "plausible")
CAPS = (5.0, 10.0, 20.0)           # the caps tried (any "regret<C>" works in lopo)


def _kind(sup: str, pooled: bool) -> str:
    return "noisy" if pooled and sup in NOISY else sup


def _regrets(group_hits):
    """(spec, cell, hit, regret) of one position group (:func:`probsft.validate.recommend._with_hits`)."""
    best = max(c["delta"] for _, c, _ in group_hits)
    return [(s, c, h, best - c["delta"]) for s, c, h in group_hits]


def _pick(groups, x: float, width: float, variant: str) -> str:
    """The objective ``variant`` picks at probe p ``x`` from position groups (with regrets)."""
    if variant in ("band", "pooled"):
        return R.decide(R._smoothed([[r[:3] for r in g] for g in groups], x, width),
                        rule="band")["objective"]
    rows: dict[str, list] = {}
    for g in groups:
        for s, c, h, reg in g:
            rows.setdefault(s, []).append((c["probe_answer_p"], h, reg))
    score = {}
    for s, rs in rows.items():
        w = R._weights([x_ for x_, _, _ in rs], x, width)
        band = float(np.dot(w, [h for _, h, _ in rs]) / w.sum())
        if variant == "minimax":
            score[s] = (max(reg for _, _, reg in rs), -band)
        else:                                        # regret<C>
            cap = float(variant[len("regret"):])
            score[s] = (float(np.dot(w, [min(reg, cap) for _, _, reg in rs]) / w.sum()), -band)
    return min(score, key=score.get)


def lopo(cells, variant: str, positions=None, width: float | None = None) -> list[dict]:
    """Every cell at ``positions`` (default all) decided by ``variant`` from the other positions'
    cells and scored (rows as :func:`probsft.validate.recommend.lopo_cells`). ``width`` None: nested,
    each position's kernel width chosen by the same leave-one-position-out on the others."""
    pooled = variant == "pooled"
    groups = {k: g for k, g in R._cell_groups(cells).items()
              if positions is None or k[0] in positions}
    hits = {k: _regrets(R._with_hits(g, R.TIE_MARGIN)) for k, g in groups.items()}
    names = sorted({k[0] for k in groups})
    widths = {n: width if width is not None else _width(cells, variant, [m for m in names if m != n])
              for n in names}
    rows = []
    for (pos, sup, opt), g in groups.items():
        h = widths[pos]
        same = [v for (n, s2, o2), v in hits.items()
                if n != pos and (_kind(s2, pooled), o2) == (_kind(sup, pooled), opt)]
        if not same:
            continue
        rec = _pick(same, g["nll"]["probe_answer_p"], h, variant)
        row = R._scored_row(pos, sup, opt, g, rec, True, R.TIE_MARGIN)
        if row is not None:
            rows.append(row)
    return rows


def _width(cells, variant: str, positions) -> float:
    """The kernel width of most leave-one-position-out hits on ``positions`` (ties: narrower), as
    :func:`probsft.validate.recommend.choose_bandwidth`; the plain mean below 3 positions."""
    if len(positions) < 3:
        return math.inf
    hits = {b: sum(r["hit"] for r in lopo(cells, variant, positions, b)) for b in R.BANDWIDTHS}
    return max(R.BANDWIDTHS, key=lambda b: (hits[b], -b))


VARIANTS = ("band", "pooled", *(f"regret{c:g}" for c in CAPS), "minimax")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m probsft.validate.rule_variants", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", nargs="+", help="paired.csv files, pooled (positions tagged by folder)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = ap.parse_args(argv)
    cells = R.read_grids(args.grids)
    for v in args.variants:
        rows = lopo(cells, v)
        kinds = R._by_supervision(rows)
        print(f"{v:9s} {sum(r['hit'] for r in rows)}/{len(rows)}  " + "  ".join(
            f"{k} {s['hits']}/{s['scored']}" for k, s in sorted(kinds.items())), flush=True)


if __name__ == "__main__":
    main()
