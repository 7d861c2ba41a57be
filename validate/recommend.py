"""Which objective for this model and this data? A dry run before any GPU time.

``recommend(model, data)`` probes the base model on a bounded sample of the data (teacher forcing,
probsft.validate.probe: mean target p, answer-token p, the p histogram, entropy, sum_j q_j^2), places
the pair on the capability continuum, and ranks the candidate objectives by

1. **the measured dose-response curve** of the continuum experiment when its ``paired.csv`` files
   exist (one row per position x supervision x optimizer x objective: Δ = exact match(objective)
   − exact match(NLL) in points, with its 95% CI; several grids pooled, :func:`read_grids`): per
   objective, Δ and the share of positions where it was within the tie band of that position's
   best, both smoothed over the measured positions with a Gaussian kernel in the probe's answer
   p, its width chosen among :data:`BANDWIDTHS` by leave-one-position-out on the measured grid
   (:func:`choose_bandwidth`). On the shipped grids the chosen width is ∞, the plain mean over
   positions: Δ differs more between neighbouring positions than the noise of a cell, so a local
   interpolation (the first rule) followed each position's quirks and missed more held-out cells
   (README, "recommend");
2. **the first-order theory** otherwise (paper Cor. E.6, probsft.theory.risk): the expected
   risk-reduction rate E_ỹ[Ṙ_f] = (1 − E)·clean + E·noisy on the model's own next-token
   distributions q of the sampled tokens (the data's targets taken as the true tokens, noisy labels
   uniform over the others), and E*, the noise rate above which f reduces risk faster than NLL.

The rule (:func:`decide`, also what :func:`hit_rate` scores; :data:`RULES`): with measured
results, ``band`` (default) takes the objective of largest smoothed in-band share (ties: the larger
Δ); ``delta`` (the rule before) the objective of largest smoothed Δ if Δ exceeds the tie margin
(2 points), else NLL. Without them: the candidate of largest first-order rate at the assumed noise.
Confidence: *high* when measured, the nearest measured position is within 0.1 of the probe's p and
the CI of Δ excludes 0 (or the pick is NLL); *medium* when measured otherwise; *low* from theory
alone.

    probsft recommend --model models/backbone --data data/validate/letter_jumble/train.jsonl
    >>> rec = probsft.recommend("models/backbone", "train.jsonl", noise=0.1)
    >>> rec["recommendation"]["objective"], rec["why"]
"""

from __future__ import annotations

import csv
import functools
import math
import time
from pathlib import Path

import numpy as np
import torch

import probsft
from probsft.errors import UserError

CANDIDATES = ("nll", "alpha(0.1)", "alpha(0.5)", "p", "alpha(2)", "alpha(10)", "nll@p>=0.2", "dft",
              "deft", "alpha(auto)")
PAIRED_COLUMNS = ("position", "probe_answer_p", "supervision", "optimizer", "objective", "n_seeds",
                  "delta", "ci_low", "ci_high", "tost_low", "tost_high", "mde", "verdict")
TIE_MARGIN = 2.0              # exact-match points: a smaller gain is a tie (the experiment's ±2)
NEAR = 0.1                    # a measured position this close in p counts as "at" the probe's p
BANDWIDTHS = (0.05, 0.1, 0.2, 0.3, 0.5, math.inf)   # kernel widths in p the rule chooses among
RATE_ELEMENTS = 1 << 24       # q values kept for the first-order rates: tokens x V <= 16M float32
PLACEMENT = "answer"          # as the continuum experiment: answer tokens, not the eos format token


# ---------------------------------------------------------------------------------------------
# the measured dose-response results


def read_paired(path, tag: str | None = None) -> list[dict]:
    """Rows of a ``paired.csv`` with numbers parsed; a missing column or bad number is a UserError.
    With ``tag``, each position is named ``tag:position`` (grids of two backbones share task
    names but not positions)."""
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in PAIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; expected {list(PAIRED_COLUMNS)}")
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


def _weights(xs, x: float, bandwidth: float) -> np.ndarray:
    """Gaussian kernel weights of measured positions ``xs`` at probe p ``x`` (all 1 for an
    infinite bandwidth), scaled so that the nearest position has weight 1 (no underflow)."""
    d = np.abs(np.asarray(xs, float) - x)
    if math.isinf(bandwidth):
        return np.ones_like(d)
    return np.exp(-0.5 * ((d / bandwidth) ** 2 - (d.min() / bandwidth) ** 2))


def dose_response(cells, x: float, supervision: str, optimizer: str, positions=None,
                  bandwidth: float | None = None, margin: float = TIE_MARGIN,
                  rule: str | None = None) -> dict:
    """{objective: measured Δ at answer p ``x``} from paired cells of one supervision and optimizer
    (only those at ``positions`` when given), smoothed over the measured positions with a Gaussian
    kernel of width ``bandwidth`` in p (Nadaraya-Watson; an infinite width is the plain mean over
    positions; None: chosen for ``rule`` by :func:`choose_bandwidth` on these cells). Per
    objective: delta, ci_low, ci_high (the same weighted mean of the cells' CIs, a summary, not a
    CI), band (the weighted share of positions where it was within the tie band of that
    position's best, :func:`_score`), the nearest measured position, its distance in p and its
    verdict. NLL is the 0 reference."""
    if bandwidth is None:
        bandwidth = choose_bandwidth(cells, positions, margin=margin, rule=rule)["bandwidth"]
    groups = [_with_hits(g, margin) for (pos, sup, opt), g in _cell_groups(cells).items()
              if (sup, opt) == (supervision, optimizer) and (positions is None or pos in positions)]
    return _smoothed(groups, x, bandwidth)


def _with_hits(group: dict, margin: float) -> list[tuple[str, dict, bool]]:
    """(spec, cell, within the tie band of the position's best) for each objective of a group."""
    return [(spec, c, _score(group, spec, margin)[0]) for spec, c in group.items()]


def _smoothed(groups, x: float, bandwidth: float) -> dict:
    """:func:`dose_response` on position groups (:func:`_with_hits`) of one supervision and
    optimizer."""
    rows: dict[str, list] = {}
    for g in groups:
        for spec, c, hit in g:
            rows.setdefault(spec, []).append((c, hit))
    out = {}
    for spec, rs in rows.items():
        w = _weights([c["probe_answer_p"] for c, _ in rs], x, bandwidth)
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


# ---------------------------------------------------------------------------------------------
# the rule


def width_text(h: float) -> str:
    """A kernel width in words: infinite is the plain mean over positions."""
    return ("the plain mean over positions" if math.isinf(h)
            else f"a Gaussian kernel of width {h:g} in p")


def _json_width(h):
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
RULE_TEXT = {"band": f"the objective most often within the {TIE_MARGIN:g}-point band of each "
                     "measured position's best (ties: the larger Δ)",
             "delta": f"the objective of largest Δ if it exceeds the {TIE_MARGIN:g}-point tie "
                      "margin, else nll"}


def _rule(rule: str | None):
    if (rule or RULE) not in RULES:
        raise UserError(f"unknown rule {rule!r}; choose from {sorted(RULES)}")
    return RULES[rule or RULE]


def decide(measured: dict, rates: dict | None = None, margin: float = TIE_MARGIN,
           rule: str | None = None) -> dict:
    """The recommendation from measured results (``dose_response``, picked by ``rule``, default
    :data:`RULE`) or, without them, first-order rates ({spec: expected rate at the assumed
    noise}). Returns objective, source, gain, confidence."""
    pick = _rule(rule)
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


def split_positions(cells) -> tuple[list[str], list[str]]:
    """Positions sorted by probe p, alternately into (rule positions, held-out positions)."""
    pos = sorted({(c["probe_answer_p"], c["position"]) for c in cells})
    names = [name for _, name in pos]
    return names[0::2], names[1::2]


@functools.lru_cache(maxsize=None)
def _spec(name: str) -> str:
    """The registry's canonical spelling of an objective (``alpha(1.0)`` -> ``alpha(1)``)."""
    return probsft.objective(name).spec


def _cell_groups(cells) -> dict:
    """{(position, supervision, optimizer): {spec: cell}}, NLL added as the 0 reference."""
    groups = {}
    for c in cells:
        groups.setdefault((c["position"], c["supervision"], c["optimizer"]), {})[
            _spec(c["objective"])] = c
    for (pos, _, _), g in groups.items():
        g["nll"] = {"position": pos, "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0,
                    "probe_answer_p": next(iter(g.values()))["probe_answer_p"],
                    "verdict": "reference"}
    return groups


def _score(group: dict, rec: str, margin: float):
    """(hit, best) of recommending ``rec`` in one cell, or None when ``rec`` was not measured.
    A hit: Δ(rec) >= Δ(best) − margin, or rec's CI reaches Δ(best) (indistinguishable)."""
    if rec not in group:
        return None
    best = max(group, key=lambda s: group[s]["delta"])
    got = group[rec]
    return got["delta"] >= group[best]["delta"] - margin or got["ci_high"] >= group[best]["delta"], best


def in_band_counts(cells, supervision: str, optimizer: str, margin: float = TIE_MARGIN
                   ) -> dict[str, list[int]]:
    """{objective: [cells within the tie band of the best, cells measured]} over every measured
    position of one supervision and optimizer, best first: how often a fixed choice, blind to the
    probe, would have been right there (evidence beside the rule, not the rule)."""
    counts: dict[str, list[int]] = {}
    for (_, sup, opt), g in _cell_groups(cells).items():
        if (sup, opt) != (supervision, optimizer):
            continue
        for spec, _, hit in _with_hits(g, margin):
            counts.setdefault(spec, [0, 0])
            counts[spec][0] += hit
            counts[spec][1] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0])))


def choose_bandwidth(cells, positions=None, bandwidths=BANDWIDTHS, margin: float = TIE_MARGIN,
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


def lopo_cells(cells, bandwidth: float | None, positions=None, margin: float = TIE_MARGIN,
               rule: str | None = None, pick=None, kind=None) -> list[dict]:
    """Every cell at ``positions`` (default: all) decided by ``rule`` from the other positions'
    cells only, at kernel width ``bandwidth``, and scored (rows as :func:`hit_rate`'s cells, all
    held out): a cross-validated hit rate over positions. ``bandwidth=None``: nested, each
    position's width chosen by :func:`choose_bandwidth` on the other positions only (the width
    choice then never sees the position it is scored on; slower, one choice per position).

    For rule variants (probsft.validate.rule_variants): ``pick(groups, p, width) -> objective``
    decides instead of ``rule`` from the other positions' groups (:func:`_with_hits`), and a cell
    is decided from the groups whose ``kind(supervision)`` equals its own (default: the same
    supervision)."""
    kind = kind or (lambda sup: sup)
    groups = {k: g for k, g in _cell_groups(cells).items()
              if positions is None or k[0] in positions}
    with_hits = {k: _with_hits(g, margin) for k, g in groups.items()}
    names = sorted({k[0] for k in groups})
    widths = {n: bandwidth if bandwidth is not None else
              choose_bandwidth(cells, [m for m in names if m != n], margin=margin, rule=rule,
                               pick=pick, kind=kind)["bandwidth"] for n in names}
    rows = []
    for (pos, sup, opt), g in groups.items():
        others = [o for (n, s2, o2), o in with_hits.items()
                  if n != pos and (kind(s2), o2) == (kind(sup), opt)]
        if not others:
            continue
        x = g["nll"]["probe_answer_p"]
        rec = (pick(others, x, widths[pos]) if pick is not None else
               decide(_smoothed(others, x, widths[pos]), margin=margin, rule=rule)["objective"])
        row = _scored_row(pos, sup, opt, g, rec, True, margin)
        if row is not None:
            rows.append(row)
    return rows


def _scored_row(pos, sup, opt, group, rec, held_out, margin) -> dict | None:
    """One scored cell: recommending ``rec`` where ``group`` was measured (None: rec not there)."""
    s = _score(group, rec, margin)
    if s is None:
        return None
    hit, best = s
    return {"position": pos, "probe_answer_p": group["nll"]["probe_answer_p"],
            "supervision": sup, "optimizer": opt, "held_out": held_out, "recommended": rec,
            "best": best, "delta_recommended": group[rec]["delta"],
            "delta_best": group[best]["delta"], "hit": hit,
            "informative": group[best]["delta"] > margin}


def hit_rate(cells, rule_positions, margin: float = TIE_MARGIN, test_cells=None,
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
    rule_groups = {k: _with_hits(g, margin) for k, g in _cell_groups(cells).items() if k[0] in at}
    scored = []
    for (pos, sup, opt), g in sorted(_cell_groups(cells if test_cells is None
                                                  else test_cells).items()):
        same_kind = [o for (_, s2, o2), o in rule_groups.items() if (s2, o2) == (sup, opt)]
        measured = _smoothed(same_kind, g["nll"]["probe_answer_p"], h)
        if not measured:                    # this noise kind / optimizer not in the rule grid
            continue
        rec = decide(measured, margin=margin, rule=rule)["objective"]
        row = _scored_row(pos, sup, opt, g, rec, test_cells is not None or pos not in at, margin)
        if row is not None:
            scored.append(row)

    return {**chosen, **_summaries(scored)}


def _summaries(scored) -> dict:
    """The summaries of scored cells (:func:`hit_rate`'s keys but the width's)."""
    held = [r for r in scored if r["held_out"]]
    return {"rule": _summary([r for r in scored if not r["held_out"]]),
            "held_out": _summary(held), "held_out_by_supervision": _by_supervision(held),
            "held_out_informative": _summary([r for r in held if r["informative"]]),
            "cells": scored}


def _summary(rows) -> dict:
    hits = sum(r["hit"] for r in rows)
    return {"hits": hits, "scored": len(rows), "rate": hits / len(rows) if rows else None}


def _by_supervision(rows) -> dict:
    return {sup: _summary([r for r in rows if r["supervision"] == sup])
            for sup in dict.fromkeys(r["supervision"] for r in rows)}


def fixed_choice(cells, spec: str, margin: float = TIE_MARGIN) -> dict:
    """How often always answering ``spec``, blind to the probe and to any grid, lands within the
    tie band of each cell's best (scored as :func:`hit_rate`; cells without ``spec`` not scored):
    {"all": summary, "by_supervision": {supervision: summary}}."""
    spec = _spec(spec)
    rows = []
    for (_, sup, _), g in sorted(_cell_groups(cells).items()):
        s = _score(g, spec, margin)
        if s is not None:
            rows.append({"supervision": sup, "hit": s[0]})
    return {"all": _summary(rows), "by_supervision": _by_supervision(rows)}


# ---------------------------------------------------------------------------------------------
# the probe and the theory


def sample_examples(records, tokenizer, sample_tokens: int, max_length: int, seed: int = 0):
    """Tokenised examples, in a seeded random order, until ``sample_tokens`` response tokens."""
    from probsft.validate.data import SFTExamples, tokenize_sft

    order = np.random.default_rng(seed).permutation(len(records))
    out = SFTExamples()
    for start in range(0, len(order), 64):
        part = tokenize_sft([records[i] for i in order[start:start + 64]], tokenizer, max_length)
        for ex in part:
            if out.n_response_tokens >= sample_tokens:
                return out
            out.append(ex)
            out.n_response_tokens += sum(1 for y in ex["labels"][1:] if y != -100)
        out.n_truncated += part.n_truncated
    return out


class _RateTokens:
    """Keeps q [n, V] of a seeded uniform subsample of the probed tokens, each token with chance
    max_tokens / total_tokens (at most max_tokens in all), for the first-order rates."""

    def __init__(self, max_tokens: int, total_tokens: int, seed: int = 0):
        self.max_tokens, self.q, self.y = max_tokens, [], []
        self.rate = min(1.0, max_tokens / max(total_tokens, 1))
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, logq, y):
        room = self.max_tokens - sum(len(t) for t in self.y)
        pick = (torch.rand(len(y), generator=self.gen) < self.rate).nonzero()[:room, 0]
        if len(pick):
            pick = pick.to(logq.device)
            self.q.append(logq[pick].exp().float().cpu())
            self.y.append(y[pick].cpu())

    def arrays(self):
        if not self.y:
            raise UserError("recommend: no response tokens to compute the first-order rates on")
        return torch.cat(self.q).numpy(), torch.cat(self.y).numpy()


def first_order(candidates, q, y_star) -> dict[str, tuple[float, float]]:
    """{spec: (mean clean rate, mean noisy rate)} on contexts q [n, V] with true tokens y_star [n]
    (probsft.theory.risk.clean_and_noisy_rates; chunks keep the float64 temporaries small)."""
    from probsft.theory.risk import clean_and_noisy_rates

    chunk = max(1, (1 << 22) // q.shape[1])
    out = {}
    for obj in candidates:
        c_sum = n_sum = 0.0
        for lo in range(0, len(y_star), chunk):
            qc = q[lo:lo + chunk].astype(np.float64)
            qc /= qc.sum(-1, keepdims=True)
            c, n = clean_and_noisy_rates(obj, qc, y_star[lo:lo + chunk])
            c_sum, n_sum = c_sum + float(c.sum()), n_sum + float(n.sum())
        out[obj.spec] = (c_sum / len(y_star), n_sum / len(y_star))
    return out


def _klass(obj) -> str:
    from probsft.theory.symbolic import prior_class

    if obj.token_stats:
        return "adaptive: alpha = sum q^2 per token, between NLL (uniform q) and -p (one-hot q)"
    return prior_class(obj)[0]   # Def. 3.3 relative to NLL


# The complete grids recommend reads by default, those that exist (results/<name>/paired.csv): the
# shipped backbone's full grid and the grids of the other backbones.
GRIDS = ("validate_full", "validate_b", "validate_c", "validate_d", "validate_e")


def default_results():
    """The paired.csv files of :data:`GRIDS` that exist, else the reduced grid's, else False."""
    from probsft.paths import RESULTS

    found = [RESULTS / g / "paired.csv" for g in GRIDS if (RESULTS / g / "paired.csv").exists()]
    if found and found[0].parent.name == GRIDS[0]:
        return found
    reduced = RESULTS / "validate" / "paired.csv"
    return [reduced] if reduced.exists() else False


def _results_text(results):
    if not results:
        return None
    paths = [results] if isinstance(results, (str, Path)) else results
    return ", ".join(str(p) for p in paths)


def recommend(model, data, noise: float = 0.0, sample_tokens: int = 100_000, device: str = "auto",
              results=None, supervision: str = "token", optimizer: str = "adamw",
              tokenizer=None, batch_size: int = 64, max_length: int = 1024,
              rate_tokens: int = 4096, progress: bool = True, seed: int = 0,
              rule: str | None = None) -> dict:
    """Recommend an objective for fine-tuning ``model`` on ``data`` (see the module docstring).

    Args:
        model: a causal LM folder / hub name, or a loaded model (then pass ``tokenizer``).
        data: SFT JSONL path or a list of records (prompt/response or messages).
        noise: the assumed label-noise rate E in [0, 1) (0: clean supervision).
        sample_tokens: response tokens to probe (a seeded random sample of examples).
        results: a ``paired.csv`` of the continuum experiment, or a list of them (positions
            tagged by folder, :func:`read_grids`). Default: the complete grids that exist among
            :data:`GRIDS` (the shipped backbone's full grid and the other backbones'), else the
            reduced grid's results/validate/paired.csv; False: the theory only.
        rule: how the measured results pick (:data:`RULES`; default :data:`RULE`).
        supervision: the noise kind to look up in ``results`` when noise > 0 (clean when E = 0).
        rate_tokens: probed tokens (a seeded uniform subsample) on which the first-order rates
            are computed (also capped so that tokens x V <= 2^24).
    Returns:
        a JSON-ready dict: probe statistics, region, each candidate's class, rates and E* against
        NLL (and measured Δ), the ranking, the recommendation and the ``why`` lines.
    """
    from probsft.theory.risk import crossing
    from probsft.validate.data import read_jsonl
    from probsft.validate.probe import probe

    start = time.perf_counter()
    if not 0 <= noise < 1:
        raise UserError(f"noise must lie in [0, 1), got {noise}")
    if sample_tokens < 1 or rate_tokens < 1:
        raise UserError("sample_tokens and rate_tokens must be >= 1")
    label = model if isinstance(model, (str, Path)) else type(model).__name__
    if isinstance(model, (str, Path)):
        from probsft.validate.train import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(str(model))
    if tokenizer is None:
        raise UserError("recommend: pass the tokenizer together with a loaded model")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is available")
    model.to("cuda" if cuda else "cpu")
    records = read_jsonl(data) if isinstance(data, (str, Path)) else list(data)
    if not records:
        raise UserError("recommend: the data has no records")
    examples = sample_examples(records, tokenizer, sample_tokens, max_length, seed)
    examples.sort(key=lambda e: len(e["input_ids"]))       # little padding per batch: faster
    V = model.get_output_embeddings().weight.shape[0]
    keep = _RateTokens(max(1, min(rate_tokens, RATE_ELEMENTS // V)), examples.n_response_tokens,
                       seed)
    stats = probe(model, tokenizer, examples, batch_size, max_length, PLACEMENT, on_batch=keep,
                  progress=progress)
    q, y_star = keep.arrays()
    x = stats["placement_mean_p"]
    alpha_auto = probsft.objective("alpha(auto)").resolve([stats["mean_p"]])  # rule: mean p

    objs = {spec: alpha_auto if spec == "alpha(auto)" else probsft.objective(spec)
            for spec in CANDIDATES}
    rates = first_order(dict.fromkeys(objs.values()), q, y_star)
    sup = "clean" if noise == 0 else supervision
    _rule(rule)                                       # a bad rule name fails before the probe
    if results is None:
        results = default_results()
    cells = read_grids(results) if results else []
    width = choose_bandwidth(cells, rule=rule)["bandwidth"] if cells else None
    measured = dose_response(cells, x, sup, optimizer, bandwidth=width) if cells else {}
    c_nll, n_nll = rates["nll"]
    cands = []
    for spec, obj in objs.items():
        c, n = rates[obj.spec]
        cross = crossing(c - c_nll, n - n_nll, obj.spec, "nll") if spec != "nll" else None
        cands.append({
            "spec": spec, "resolved": obj.spec, "label": obj.label, "class": _klass(obj),
            "rate_clean": c, "rate_noisy": n, "rate_at_noise": (1 - noise) * c + noise * n,
            "e_star_vs_nll": None if cross is None else cross.e_star,
            "vs_nll": None if cross is None else cross.statement(),
            "measured": measured.get(probsft.objective(spec).spec, measured.get(obj.spec))})
    key = (lambda r: (r["measured"] is not None, r["measured"]["delta"] if r["measured"] else
                      r["rate_at_noise"])) if measured else (lambda r: r["rate_at_noise"])
    cands.sort(key=key, reverse=True)
    theory_rates = {r["resolved"]: r["rate_at_noise"] for r in cands}
    rec = decide(measured, theory_rates, rule=rule)
    chosen = next(r for r in cands if rec["objective"] in (r["spec"], r["resolved"]))
    out = {
        "model": str(label), "data": str(data) if isinstance(data, (str, Path)) else "records",
        "noise": noise, "supervision": sup, "optimizer": optimizer,
        "results": _results_text(results), "rule": rule or RULE,
        "bandwidth": _json_width(width),
        "probe": {k: stats[k] for k in ("examples", "tokens", "eos_tokens", "mean_p", "answer_mean_p",
                                        "eos_mean_p", "placement_mean_p", "frac_p_gt_0.55",
                                        "mean_entropy", "mean_sumsq", "top1_accuracy",
                                        "frac_confident_wrong", "p_histogram", "quantiles",
                                        "region", "reference", "expected_winners", "why")},
        "rate_tokens": int(len(y_star)), "alpha_auto": alpha_auto.spec,
        "candidates": cands, "ranking": [r["spec"] for r in cands],
        "recommendation": {**rec, "objective": chosen["spec"], "resolved": chosen["resolved"]},
        "in_band": in_band_counts(cells, sup, optimizer) if cells else {},
        "seconds": round(time.perf_counter() - start, 2)}
    out["why"] = explain(out)
    return out


def explain(out: dict) -> list[str]:
    """The few checkable lines behind a recommendation."""
    pr, rec = out["probe"], out["recommendation"]
    by_spec = {r["resolved"]: r for r in out["candidates"]}
    lines = [f"probe: {pr['tokens']} response tokens of {pr['examples']} examples; mean p "
             f"{pr['mean_p']:.3f} (answer tokens {pr['answer_mean_p']:.3f}), mean entropy "
             f"{pr['mean_entropy']:.3f} nats, mean sum q^2 {pr['mean_sumsq']:.3f}",
             f"region: {pr['region']} by answer p {pr['placement_mean_p']:.3f} "
             f"(reference {pr['reference']}); the theory's expected winners there: "
             f"{', '.join(pr['expected_winners'])}",
             f"assumed label noise E = {out['noise']:g} ({out['supervision']} supervision); "
             f"alpha(auto) here is {out['alpha_auto']}"]
    chosen = by_spec[rec["resolved"]]
    if rec["source"] == "measured":
        m = chosen["measured"]
        lines.append(f"measured ({out['results']}): {rec['resolved']} vs nll Δ = {m['delta']:+.1f} "
                     f"exact-match points (CI {m['ci_low']:+.1f} .. {m['ci_high']:+.1f}) at p "
                     f"{pr['placement_mean_p']:.3f}, smoothed over the measured positions by "
                     f"{width_text(float(out['bandwidth']))} (chosen by leave-one-position-out); "
                     "nearest measured position "
                     f"{m['nearest_position'] or '-'} at distance {m['distance']:.2f}; within the "
                     f"{TIE_MARGIN:g}-point band of each position's best at {m['band']:.0%} of "
                     "them (same weights)")
        lines.append(f"rule ({out['rule']}): {RULE_TEXT[out['rule']]}")
    else:
        lines.append("no measured dose-response results: ranked by the first-order risk-reduction "
                     f"rate at E on the model's own distributions ({out['rate_tokens']} tokens); "
                     "the expected gain's size is not predicted by the linearised theory")
    band = out["in_band"]
    if band:
        top, (hits, n) = next(iter(band.items()))
        mine = band.get(rec["resolved"])
        lines.append(f"probe-blind check: over the {n} measured positions of "
                     f"{out['supervision']}/{out['optimizer']}, {top} was within the "
                     f"{TIE_MARGIN:g}-point band of the best in {hits}"
                     + ("" if mine is None or rec["resolved"] == top else
                        f"; {rec['resolved']} in {mine[0]} of {mine[1]}"))
    if chosen["vs_nll"]:
        lines.append(f"first order: {chosen['vs_nll']}")
    rival = next((r for r in out["candidates"] if r["resolved"] not in (rec["resolved"], "nll")
                  and r["e_star_vs_nll"] is not None), None)
    if rival:
        lines.append(f"runner-up {rival['spec']} ({rival['class']}): {rival['vs_nll']}")
    lines.append(f"recommendation: {rec['objective']} ({chosen['class']}), confidence "
                 f"{rec['confidence']}")
    return lines


def format_report(out: dict) -> str:
    """The recommendation, its ``why`` lines and the ranked table as text."""
    rows = [f"{'objective':<14} {'class':<14} {'rate@E':>10} {'E* vs nll':>10} {'measured Δ':>12}"]
    for r in out["candidates"]:
        e = r["e_star_vs_nll"]
        e_txt = "-" if e is None else "none" if math.isinf(e) else "tie" if math.isnan(e) \
            else f"{e:.3g}"
        m = r["measured"]
        rows.append(f"{r['spec']:<14} {r['class'].split(':')[0]:<14} {r['rate_at_noise']:>10.3g} "
                    f"{e_txt:>10} {'-' if m is None else format(m['delta'], '+.1f'):>12}")
    return "\n".join([f"recommended: {out['recommendation']['objective']}", *out["why"], "",
                      *rows, f"({out['seconds']:.1f} s)"])


def main(argv=None) -> None:
    """``python -m probsft.validate.recommend PAIRED_CSV [TEST_CSV] [--also CSV ...] [--rule R]
    [--lopo]``: the rule's hit rate on the continuum grid, set on every other position (by probe
    p) and reported on the rest; with a test grid (another backbone's ``paired.csv``), set on every
    position of the rule grid(s) (PAIRED_CSV plus any ``--also``, positions tagged by folder) and
    reported on every cell of the test grid; with ``--lopo``, each position of the rule grid(s)
    decided from the others (:func:`lopo_cells`). By supervision too."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m probsft.validate.recommend",
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
            out = {**chosen, **_summaries(rows)}                  # every row held out
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
                      "bandwidth": _json_width(out["bandwidth"]),
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
