"""The measured cells of the continuum grids, and how a choice is scored in one of them.

A cell is one row of a grid's ``paired.csv`` (probsft.continuum.analysis.PAIRED_FIELDS): one
position x supervision x optimizer x objective, Δ = exact match(objective) − exact match(NLL) in
points with its 95% CI. Cells of one (position, supervision, optimizer) form a *group*, NLL added as
the 0 reference (:func:`cell_groups`). Recommending objective ``r`` in a group is a *hit* when it
lands within the tie band of the group's best: Δ(r) >= Δ(best) − :data:`MARGIN`, or r's CI reaches
Δ(best) (indistinguishable from the best) (:func:`score`). A group is *informative* when the best
beats NLL by more than the margin (there, always answering NLL would miss).

Several grids pool with positions tagged by folder (``validate_b:t_sh2``, :func:`read_grids`), so
that the same task on two backbones counts as two positions.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import probsft
from probsft.continuum.analysis import PAIRED_FIELDS
from probsft.continuum.predictions import TIE_MARGIN
from probsft.errors import UserError

MARGIN = 100 * TIE_MARGIN     # the tie margin in exact-match points (cells are in points)


def read_paired(path, tag: str | None = None) -> list[dict]:
    """Rows of a ``paired.csv`` with numbers parsed; a missing column or bad number is a UserError.
    With ``tag``, each position is named ``tag:position`` (grids of two backbones share task
    names but not positions)."""
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in PAIRED_FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; expected {list(PAIRED_FIELDS)}")
        rows = []
        for i, r in enumerate(reader, 2):
            try:
                rows.append({**r, **{k: float(r[k]) for k in ("probe_answer_p", "delta", "ci_low",
                                                              "ci_high", "mde")},
                             "n_seeds": int(float(r["n_seeds"]))})
            except ValueError as err:
                raise UserError(f"{path}:{i}: {err}") from None
            if tag:
                rows[-1]["position"] = f"{tag}:{r['position']}"
    return rows


def read_grids(paths) -> list[dict]:
    """The cells of one or several ``paired.csv`` files (one path or a list). With several, each
    grid's positions are tagged by its folder's name (``validate_b:t_sh2``), so that the same task
    on two backbones counts as two positions."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return [c for p, t in zip(paths, grid_tags(paths)) for c in read_paired(p, t)]


def grid_tags(paths) -> list[str | None]:
    """The tag :func:`read_grids` gives each ``paired.csv``'s positions: none for a single grid,
    else its folder's name (which must differ between the grids)."""
    if not paths:
        raise UserError("no paired.csv given")
    if len(paths) == 1:
        return [None]
    tags = [Path(p).resolve().parent.name for p in paths]
    if len(set(tags)) < len(tags):
        raise UserError(f"grids in folders of the same name cannot be told apart: {tags}")
    return tags


def split_positions(cells) -> tuple[list[str], list[str]]:
    """Positions sorted by probe p, alternately into (rule positions, held-out positions)."""
    pos = sorted({(c["probe_answer_p"], c["position"]) for c in cells})
    names = [name for _, name in pos]
    return names[0::2], names[1::2]


@functools.lru_cache(maxsize=None)
def canonical(name: str) -> str:
    """The registry's canonical spelling of an objective (``alpha(1.0)`` -> ``alpha(1)``)."""
    return probsft.objective(name).spec


def cell_groups(cells) -> dict:
    """{(position, supervision, optimizer): {spec: cell}}, NLL added as the 0 reference."""
    groups = {}
    for c in cells:
        groups.setdefault((c["position"], c["supervision"], c["optimizer"]), {})[
            canonical(c["objective"])] = c
    for (pos, _, _), g in groups.items():
        g["nll"] = {"position": pos, "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                    "probe_answer_p": next(iter(g.values()))["probe_answer_p"],
                    "verdict": "reference"}
    return groups


def score(group: dict, rec: str, margin: float):
    """(hit, best) of recommending ``rec`` in one cell, or None when ``rec`` was not measured.
    A hit: Δ(rec) >= Δ(best) − margin, or rec's CI reaches Δ(best) (indistinguishable)."""
    if rec not in group:
        return None
    best = max(group, key=lambda s: group[s]["delta"])
    got = group[rec]
    return got["delta"] >= group[best]["delta"] - margin or got["ci_high"] >= group[best]["delta"], best


def with_hits(group: dict, margin: float) -> list[tuple[str, dict, bool]]:
    """(spec, cell, within the tie band of the position's best) for each objective of a group."""
    return [(spec, c, score(group, spec, margin)[0]) for spec, c in group.items()]


def scored_row(pos, sup, opt, group, rec, held_out, margin) -> dict | None:
    """One scored cell: recommending ``rec`` where ``group`` was measured (None: rec not there)."""
    s = score(group, rec, margin)
    if s is None:
        return None
    hit, best = s
    return {"position": pos, "probe_answer_p": group["nll"]["probe_answer_p"],
            "supervision": sup, "optimizer": opt, "held_out": held_out, "recommended": rec,
            "best": best, "delta_recommended": group[rec]["delta"],
            "delta_best": group[best]["delta"], "hit": hit,
            "informative": group[best]["delta"] > margin}


def summaries(scored) -> dict:
    """The summaries of scored cells (:func:`hit_rate`'s keys but the width's)."""
    held = [r for r in scored if r["held_out"]]
    return {"rule": _summary([r for r in scored if not r["held_out"]]),
            "held_out": _summary(held), "held_out_by_supervision": by_supervision(held),
            "held_out_informative": _summary([r for r in held if r["informative"]]),
            "cells": scored}


def _summary(rows) -> dict:
    hits = sum(r["hit"] for r in rows)
    return {"hits": hits, "scored": len(rows), "rate": hits / len(rows) if rows else None}


def by_supervision(rows) -> dict:
    return {sup: _summary([r for r in rows if r["supervision"] == sup])
            for sup in dict.fromkeys(r["supervision"] for r in rows)}


def in_band_counts(cells, supervision: str, optimizer: str, margin: float = MARGIN
                   ) -> dict[str, list[int]]:
    """{objective: [cells within the tie band of the best, cells measured]} over every measured
    position of one supervision and optimizer, best first: how often a fixed choice, blind to the
    probe, would have been right there (evidence beside the rule, not the rule)."""
    counts: dict[str, list[int]] = {}
    for (_, sup, opt), g in cell_groups(cells).items():
        if (sup, opt) != (supervision, optimizer):
            continue
        for spec, _, hit in with_hits(g, margin):
            counts.setdefault(spec, [0, 0])
            counts[spec][0] += hit
            counts[spec][1] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0])))


def fixed_choice(cells, spec: str, margin: float = MARGIN) -> dict:
    """How often always answering ``spec``, blind to the probe and to any grid, lands within the
    tie band of each cell's best (scored as :func:`hit_rate`; cells without ``spec`` not scored):
    {"all": summary, "by_supervision": {supervision: summary}}."""
    spec = canonical(spec)
    rows = []
    for (_, sup, _), g in sorted(cell_groups(cells).items()):
        s = score(g, spec, margin)
        if s is not None:
            rows.append({"supervision": sup, "hit": s[0]})
    return {"all": _summary(rows), "by_supervision": by_supervision(rows)}
