"""The recommendation rules: measured Δs smoothed along probe p, a pick, and its honest scoring.

:func:`dose_response` smooths the measured cells of one supervision and optimizer at a probe's
answer p with a Gaussian kernel (Nadaraya-Watson; an infinite width is the plain mean over
positions); per objective it gives Δ, the CI ends (a weighted summary, not a CI) and *band*, the
weighted share of positions where the objective was within the tie band of that position's best
(probsft.continuum.cells.score). A rule picks from that (:data:`RULES`): ``band`` (default) the
objective of largest band share (ties: the larger Δ); ``delta`` (the rule before) the objective
of largest Δ if Δ exceeds the tie margin, else NLL. The kernel width is chosen among
:data:`BANDWIDTHS` by leave-one-position-out (:func:`choose_bandwidth`); :func:`lopo_cells` and
:func:`hit_rate` score a rule on positions it never saw.

    python -m probsft.continuum.rule results/validate_full/paired.csv [TEST_CSV] [--also CSV ...]
        [--rule R] [--lopo]
"""

from __future__ import annotations

import math

import numpy as np

from probsft.continuum.cells import (MARGIN, cell_groups, read_grids, read_paired, scored_row,
                                     split_positions, summaries, with_hits)
from probsft.errors import UserError

NEAR = 0.1                    # a measured position this close in p counts as "at" the probe's p
BANDWIDTHS = (0.05, 0.1, 0.2, 0.3, 0.5, math.inf)   # kernel widths in p the rule chooses among


def kernel_weights(xs, x: float, bandwidth: float) -> np.ndarray:
    """Gaussian kernel weights of measured positions ``xs`` at probe p ``x`` (all 1 for an
    infinite bandwidth), scaled so that the nearest position has weight 1 (no underflow)."""
    d = np.abs(np.asarray(xs, float) - x)
    if math.isinf(bandwidth):
        return np.ones_like(d)
    return np.exp(-0.5 * ((d / bandwidth) ** 2 - (d.min() / bandwidth) ** 2))


def dose_response(cells, x: float, supervision: str, optimizer: str, positions=None,
                  bandwidth: float | None = None, margin: float = MARGIN,
                  rule: str | None = None) -> dict:
    """{objective: measured Δ at answer p ``x``} from paired cells of one supervision and optimizer
    (only those at ``positions`` when given), smoothed over the measured positions with a Gaussian
    kernel of width ``bandwidth`` in p (Nadaraya-Watson; an infinite width is the plain mean over
    positions; None: chosen for ``rule`` by :func:`choose_bandwidth` on these cells). Per
    objective: delta, ci_low, ci_high (the same weighted mean of the cells' CIs, a summary, not a
    CI), band (the weighted share of positions where it was within the tie band of that
    position's best, probsft.continuum.cells.score), the nearest measured position, its distance in p and its
    verdict. NLL is the 0 reference."""
    if bandwidth is None:
        bandwidth = choose_bandwidth(cells, positions, margin=margin, rule=rule)["bandwidth"]
    groups = [with_hits(g, margin) for (pos, sup, opt), g in cell_groups(cells).items()
              if (sup, opt) == (supervision, optimizer) and (positions is None or pos in positions)]
    return smoothed(groups, x, bandwidth)


def smoothed(groups, x: float, bandwidth: float) -> dict:
    """:func:`dose_response` on position groups (:func:`with_hits`) of one supervision and
    optimizer."""
    rows: dict[str, list] = {}
    for g in groups:
        for spec, c, hit in g:
            rows.setdefault(spec, []).append((c, hit))
    out = {}
    for spec, rs in rows.items():
        w = kernel_weights([c["probe_answer_p"] for c, _ in rs], x, bandwidth)
        near = min((c for c, _ in rs), key=lambda c: abs(c["probe_answer_p"] - x))
        out[spec] = {**{k: float(np.dot(w, [c[k] for c, _ in rs]) / w.sum())
                        for k in ("delta", "ci_low", "ci_high")},
                     "band": float(np.dot(w, [hit for _, hit in rs]) / w.sum()),
                     "nearest_position": near["position"],
                     "distance": abs(near["probe_answer_p"] - x),
                     "verdict": near.get("verdict", "")}
    if "nll" in out:
        others = [v["distance"] for s, v in out.items() if s != "nll"]
        out["nll"].update(nearest_position=None, distance=min(others, default=0.0),
                          verdict="reference")
    return out


def width_text(h: float) -> str:
    """A kernel width in words: infinite is the plain mean over positions."""
    return ("the plain mean over positions" if math.isinf(h)
            else f"a Gaussian kernel of width {h:g} in p")


def json_width(h):
    """A kernel width for JSON: the number, or "inf" (JSON has no infinity)."""
    return h if h is None or math.isfinite(h) else "inf"


def _by_band(measured: dict, margin: float) -> str:
    """The objective most often within the tie band of the best (smoothed), ties to larger Δ."""
    return max(measured, key=lambda s: (measured[s]["band"], measured[s]["delta"]))


def _by_delta(measured: dict, margin: float) -> str:
    """The objective of largest smoothed Δ, or NLL when that Δ is within the tie margin."""
    best = max(measured, key=lambda s: measured[s]["delta"])
    return best if measured[best]["delta"] > margin else "nll"


# The rules that pick an objective from the smoothed measured results (:func:`dose_response`).
# "band", the default since the third backbone's test was registered (README, "recommend"):
# scored by the tie band, so it picks what most often lands in it. "delta": the rule before.
RULES = {"band": _by_band, "delta": _by_delta}
RULE = "band"
RULE_TEXT = {"band": f"the objective most often within the {MARGIN:g}-point band of each "
                     "measured position's best (ties: the larger Δ)",
             "delta": f"the objective of largest Δ if it exceeds the {MARGIN:g}-point tie "
                      "margin, else nll"}


def rule_of(rule: str | None):
    """The pick function of ``rule`` (default :data:`RULE`); an unknown name is a UserError."""
    if (rule or RULE) not in RULES:
        raise UserError(f"unknown rule {rule!r}; choose from {sorted(RULES)}")
    return RULES[rule or RULE]


def decide(measured: dict, rates: dict | None = None, margin: float = MARGIN,
           rule: str | None = None) -> dict:
    """The recommendation from measured results (``dose_response``, picked by ``rule``, default
    :data:`RULE`) or, without them, first-order rates ({spec: expected rate at the assumed
    noise}). Returns objective, source, gain, confidence."""
    pick = rule_of(rule)
    if measured:
        best = pick(measured, margin)
        m = measured[best]
        near = m["distance"] <= NEAR
        sure = near and (best == "nll" or m["ci_low"] > 0)
        return {"objective": best, "source": "measured", "expected_gain": m["delta"],
                "gain_ci": (m["ci_low"], m["ci_high"]),
                "confidence": "high" if sure else "medium" if near else "low"}
    if not rates:
        raise UserError("nothing to decide from: no measured results and no first-order rates")
    best = max(rates, key=lambda s: rates[s])
    return {"objective": best, "source": "theory", "expected_gain": None, "gain_ci": None,
            "confidence": "low"}


def choose_bandwidth(cells, positions=None, bandwidths=BANDWIDTHS, margin: float = MARGIN,
                     rule: str | None = None, pick=None, kind=None) -> dict:
    """The kernel width of the rule, by leave-one-position-out on ``positions`` (default: all):
    for each candidate width, each position's cells are decided from the other positions only
    (:func:`lopo_cells`, whose ``pick`` and ``kind`` these are); the width with the most hits wins,
    ties to the narrower width (the more local, as the continuum claims). With fewer than 3
    positions: the plain mean (inf). Returns {"bandwidth": h, "lopo": {h: [hits, scored]}}."""
    if len({c["position"] for c in cells if positions is None or c["position"] in positions}) < 3:
        return {"bandwidth": math.inf, "lopo": {}}
    lopo = {}
    for h in bandwidths:
        rows = lopo_cells(cells, h, positions, margin, rule, pick, kind)
        lopo[h] = [sum(r["hit"] for r in rows), len(rows)]
    best = max(bandwidths, key=lambda h: (lopo[h][0], -h))
    return {"bandwidth": best, "lopo": lopo}


def lopo_cells(cells, bandwidth: float | None, positions=None, margin: float = MARGIN,
               rule: str | None = None, pick=None, kind=None) -> list[dict]:
    """Every cell at ``positions`` (default: all) decided by ``rule`` from the other positions'
    cells only, at kernel width ``bandwidth``, and scored (rows as :func:`hit_rate`'s cells, all
    held out): a cross-validated hit rate over positions. ``bandwidth=None``: nested, each
    position's width chosen by :func:`choose_bandwidth` on the other positions only (the width
    choice then never sees the position it is scored on; slower, one choice per position).

    For rule variants (probsft.continuum.rule_variants): ``pick(groups, p, width) -> objective``
    decides instead of ``rule`` from the other positions' groups (:func:`with_hits`), and a cell
    is decided from the groups whose ``kind(supervision)`` equals its own (default: the same
    supervision)."""
    kind = kind or (lambda sup: sup)
    groups = {k: g for k, g in cell_groups(cells).items()
              if positions is None or k[0] in positions}
    hits = {k: with_hits(g, margin) for k, g in groups.items()}
    names = sorted({k[0] for k in groups})
    widths = {n: bandwidth if bandwidth is not None else
              choose_bandwidth(cells, [m for m in names if m != n], margin=margin, rule=rule,
                               pick=pick, kind=kind)["bandwidth"] for n in names}
    rows = []
    for (pos, sup, opt), g in groups.items():
        others = [o for (n, s2, o2), o in hits.items()
                  if n != pos and (kind(s2), o2) == (kind(sup), opt)]
        if not others:
            continue
        x = g["nll"]["probe_answer_p"]
        rec = (pick(others, x, widths[pos]) if pick is not None else
               decide(smoothed(others, x, widths[pos]), margin=margin, rule=rule)["objective"])
        row = scored_row(pos, sup, opt, g, rec, True, margin)
        if row is not None:
            rows.append(row)
    return rows


def hit_rate(cells, rule_positions, margin: float = MARGIN, test_cells=None,
             bandwidth: float | None = None, rule: str | None = None) -> dict:
    """How often :func:`decide`, set on ``rule_positions`` only (its kernel width too, by
    :func:`choose_bandwidth` on them unless ``bandwidth`` is given), lands within the tie band of
    the best measured objective of each (position, supervision, optimizer) cell.

    Scored: the cells of ``cells`` (held out: those not at a rule position), or, when
    ``test_cells`` is given (another grid: a second backbone), those, all held out. In the tie band:
    Δ(recommended) >= Δ(best) − margin, or the recommended objective's CI reaches Δ(best)
    (indistinguishable from the best); NLL's Δ is 0. A recommendation not measured in a cell, or a
    cell whose noise kind and optimizer the rule grid lacks, is not scored. A cell is
    *informative* when the best objective beats NLL by more than the margin (there, always
    answering NLL would miss). Returns {"bandwidth", "lopo", "rule", "held_out",
    "held_out_informative", "held_out_by_supervision", "cells"}, each summary with hits, scored
    and rate (None when nothing was scored)."""
    at = set(rule_positions)
    chosen = (choose_bandwidth(cells, at, margin=margin, rule=rule) if bandwidth is None
              else {"bandwidth": bandwidth, "lopo": {}})
    h = chosen["bandwidth"]
    rule_groups = {k: with_hits(g, margin) for k, g in cell_groups(cells).items() if k[0] in at}
    scored = []
    for (pos, sup, opt), g in sorted(cell_groups(cells if test_cells is None
                                                  else test_cells).items()):
        same_kind = [o for (_, s2, o2), o in rule_groups.items() if (s2, o2) == (sup, opt)]
        measured = smoothed(same_kind, g["nll"]["probe_answer_p"], h)
        if not measured:                    # this noise kind / optimizer not in the rule grid
            continue
        rec = decide(measured, margin=margin, rule=rule)["objective"]
        row = scored_row(pos, sup, opt, g, rec, test_cells is not None or pos not in at, margin)
        if row is not None:
            scored.append(row)

    return {**chosen, **summaries(scored)}


def main(argv=None) -> None:
    """``python -m probsft.continuum.rule PAIRED_CSV [TEST_CSV] [--also CSV ...] [--rule R]
    [--lopo]``: the rule's hit rate on the continuum grid, set on every other position (by probe
    p) and reported on the rest; with a test grid (another backbone's ``paired.csv``), set on every
    position of the rule grid(s) (PAIRED_CSV plus any ``--also``, positions tagged by folder) and
    reported on every cell of the test grid; with ``--lopo``, each position of the rule grid(s)
    decided from the others (:func:`lopo_cells`). By supervision too."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.rule",
                                 description="the recommendation rule's hit rate on measured grids")
    ap.add_argument("paired", help="the rule's grid: a continuum experiment's paired.csv")
    ap.add_argument("test", nargs="?", help="a held-out grid (another backbone's paired.csv)")
    ap.add_argument("--also", nargs="+", default=[], metavar="CSV",
                    help="more rule grids (other backbones), pooled with PAIRED")
    ap.add_argument("--rule", choices=sorted(RULES), default=RULE,
                    help=f"how the measured results pick (default {RULE})")
    ap.add_argument("--lopo", action="store_true",
                    help="score every position of the (pooled) rule grids from the other "
                         "positions only, its kernel width chosen on those others too (nested)")
    args = ap.parse_args(argv)
    try:
        cells = read_grids([args.paired, *args.also])
        if args.lopo:
            if args.test:
                raise UserError("--lopo scores the rule grids themselves: give no TEST")
            chosen = choose_bandwidth(cells, rule=args.rule)
            rows = lopo_cells(cells, None, rule=args.rule)          # nested: honest widths
            out = {**chosen, **summaries(rows)}                  # every row held out
            rule, held = ["each position from the others"], sorted({r["position"] for r in rows})
        elif args.test:
            rule, held = sorted({c["position"] for c in cells}), ["every cell of " + args.test]
            out = hit_rate(cells, rule, test_cells=read_paired(args.test), rule=args.rule)
        else:
            if args.also:
                raise UserError("--also pools rule grids: give TEST or --lopo too")
            rule, held = split_positions(cells)
            out = hit_rate(cells, rule, rule=args.rule)
    except (UserError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps({"rule": args.rule, "rule_positions": rule, "held_out_positions": held,
                      "bandwidth": json_width(out["bandwidth"]),
                      "lopo": {str(k): f"{v[0]}/{v[1]}" for k, v in out["lopo"].items()},
                      "rule_cells": out["rule"], "held_out": out["held_out"],
                      "held_out_informative": out["held_out_informative"],
                      "held_out_by_supervision": out["held_out_by_supervision"]}, indent=2))
    for c in out["cells"]:
        print(f"{c['position']:<14} p={c['probe_answer_p']:.3f} {c['supervision']:<9} "
              f"{c['optimizer']:<5} {'held-out' if c['held_out'] else 'rule':<8} "
              f"rec {c['recommended']:<11} best {c['best']:<11} "
              f"Δ {c['delta_recommended']:+.1f} vs {c['delta_best']:+.1f}  "
              f"{'hit' if c['hit'] else 'MISS'}")


if __name__ == "__main__":
    main()
