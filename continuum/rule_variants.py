"""Rule variants tried on the pooled grids and not adopted (README, "recommend"): scored by the same
nested leave-one-position-out as ``python -m probsft.continuum.rule ... --lopo``, so they can be
compared with the registered rules (band, delta) on equal terms.

* ``pooled``: the band rule deciding a noisy cell from every noisy kind (token, whole-answer,
  plausible) of the same optimizer, instead of its own kind only;
* ``regret<C>``: the objective of least kernel-weighted regret (the position's best Δ minus its Δ)
  capped at C points (the band rule is regret capped at the margin and thresholded; delta is the
  uncapped mean);
* ``minimax``: the objective of least worst-case regret over the positions (ties: the band share).

    python -m probsft.continuum.rule_variants results/validate_full/paired.csv \\
        results/validate_b/paired.csv results/validate_c/paired.csv results/validate_d/paired.csv
"""

from __future__ import annotations

import argparse

import numpy as np

from probsft.continuum import cells as C
from probsft.continuum import rule as R

NOISY = ("token", "answer", "plausible")
CAPS = (5.0, 10.0, 20.0)           # the caps tried (any "regret<C>" works in lopo)


def _pooled_kind(sup: str) -> str:
    return "noisy" if sup in NOISY else sup


def _pick_by_regret(variant: str):
    """The ``pick`` of ``regret<C>`` or ``minimax`` for :func:`probsft.continuum.rule.lopo_cells`:
    per objective, its regret at each position (the position's best Δ minus its Δ), scored by the
    kernel-weighted mean capped at C, or by the worst case; ties: the larger band share."""
    def pick(groups, x: float, width: float) -> str:
        rows: dict[str, list] = {}
        for g in groups:
            best = max(c["delta"] for _, c, _ in g)
            for s, c, h in g:
                rows.setdefault(s, []).append((c["probe_answer_p"], h, best - c["delta"]))
        score = {}
        for s, rs in rows.items():
            w = R.kernel_weights([x_ for x_, _, _ in rs], x, width)
            band = float(np.dot(w, [h for _, h, _ in rs]) / w.sum())
            if variant == "minimax":
                score[s] = (max(reg for _, _, reg in rs), -band)
            else:                                        # regret<C>
                cap = float(variant[len("regret"):])
                score[s] = (float(np.dot(w, [min(reg, cap) for _, _, reg in rs]) / w.sum()), -band)
        return min(score, key=score.get)
    return pick


def lopo(cells, variant: str, positions=None, width: float | None = None) -> list[dict]:
    """Every cell at ``positions`` (default all) decided by ``variant`` from the other positions'
    cells and scored: :func:`probsft.continuum.rule.lopo_cells` with the variant's ``pick``
    and ``kind``. ``width`` None: nested, each position's kernel width chosen by the same
    leave-one-position-out on the others."""
    pick = None if variant in ("band", "pooled") else _pick_by_regret(variant)
    kind = _pooled_kind if variant == "pooled" else None
    return R.lopo_cells(cells, width, positions, rule="band", pick=pick, kind=kind)


VARIANTS = ("band", "pooled", *(f"regret{c:g}" for c in CAPS), "minimax")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.rule_variants", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", nargs="+", help="paired.csv files, pooled (positions tagged by folder)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = ap.parse_args(argv)
    cells = C.read_grids(args.grids)
    for v in args.variants:
        rows = lopo(cells, v)
        kinds = C.by_supervision(rows)
        print(f"{v:9s} {sum(r['hit'] for r in rows)}/{len(rows)}  " + "  ".join(
            f"{k} {s['hits']}/{s['scored']}" for k, s in sorted(kinds.items())), flush=True)


if __name__ == "__main__":
    main()
