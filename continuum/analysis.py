"""The continuum grid's saved runs analysed: paired cells, verdicts, crossover, fit, α trend.

Pure functions of the rows of ``results.csv`` (probsft.continuum.experiment), no model needed:
:func:`paired_cells` compares every objective with NLL item by item within seed
(probsft.validate.stats.paired; Δ, CIs and MDE in exact-match points), :func:`analyse` adds the
verdict counts (probsft.continuum.predictions), the −p − NLL crossover along probe p, whether the
better-fitting objective also wins held out, the best α per position and the adaptive objectives
against the best fixed one; :func:`write_analysis` saves ``paired.csv`` (:data:`PAIRED_FIELDS`,
the one definition of its columns) and ``verdicts.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probsft.continuum import predictions as pred
from probsft.continuum.experiment import write_rows
from probsft.files import atomic_write_json, rounded
from probsft.verdicts import verdict


PAIRED_FIELDS = ["position", "probe_answer_p", "supervision", "optimizer", "objective", "n_seeds",
                 "delta", "ci_low", "ci_high", "tost_low", "tost_high", "mde", "verdict"]


def _items(r: dict) -> np.ndarray:
    return (np.frombuffer(r["items"].encode(), dtype=np.uint8) - ord("0")).astype(np.int64)


def paired_cells(rows: list[dict], margin: float = pred.TIE_MARGIN) -> list[dict]:
    """One record per (position, supervision, optimizer, objective ≠ nll) with ≥ 2 paired seeds:
    the columns of ``paired.csv`` (Δ, CIs and MDE in exact-match points) plus region, prediction
    (for −p only; the theory's sign is stated for −p against NLL) and the mean training answer p."""
    from probsft.validate.stats import paired

    by = {}
    for r in rows:
        if r["objective"] != "base":
            by.setdefault((r["position"], r["supervision"], r["optimizer"], r["objective"]),
                          {})[int(r["seed"])] = r
    out = []
    for (pos, sup, opt, spec), runs in by.items():
        ref = by.get((pos, sup, opt, "nll"))
        if spec == "nll" or ref is None:
            continue
        seeds = sorted(set(runs) & set(ref))
        if len(seeds) < 2:
            continue
        a = np.stack([_items(runs[s]) for s in seeds])
        b = np.stack([_items(ref[s]) for s in seeds])
        st = paired(a, b, margin)
        region = runs[seeds[0]]["region"]
        prediction = pred.predict(region, sup) if spec == "p" else ""
        verdict = pred.verdict(prediction, (st["ci_low"], st["ci_high"]),
                               (st["tost_low"], st["tost_high"]), margin) if prediction else ""
        pts = lambda x: round(100 * x, 2)
        out.append({"position": pos, "probe_answer_p": float(runs[seeds[0]]["probe_answer_p"]),
                    "supervision": sup, "optimizer": opt, "objective": spec,
                    "n_seeds": st["n_seeds"], "delta": pts(st["delta"]),
                    "ci_low": pts(st["ci_low"]), "ci_high": pts(st["ci_high"]),
                    "tost_low": pts(st["tost_low"]), "tost_high": pts(st["tost_high"]),
                    "mde": pts(st["mde"]), "verdict": verdict, "region": region,
                    "prediction": prediction, "per_seed": [
                        pts(float((_items(runs[s]) - _items(ref[s])).mean())) for s in seeds],
                    "train_answer_p": round(float(np.mean(
                        [float(runs[s]["train_answer_p"]) for s in seeds])), 4),
                    "nll_train_answer_p": round(float(np.mean(
                        [float(ref[s]["train_answer_p"]) for s in seeds])), 4)})
    out.sort(key=lambda c: (c["supervision"], c["optimizer"], c["objective"], c["probe_answer_p"]))
    return out


def analyse(rows: list[dict], margin: float = pred.TIE_MARGIN) -> dict:
    """Everything the report and figure need, from the saved rows: paired cells, verdict counts,
    the crossover of −p − NLL per (supervision, optimizer), fit-follows-winner and the α trend."""
    from probsft.validate.stats import crossover

    cells = paired_cells(rows, margin)
    verdicts = [c for c in cells if c["verdict"]]
    counts = {v: sum(c["verdict"] == v for c in verdicts) for v in pred.VERDICTS}
    cross = {}
    for (sup, opt), cs in pred.by_kind(verdicts).items():
        S = min(len(c["per_seed"]) for c in cs)
        if len(cs) >= 2:
            cross[f"{sup}/{opt}"] = crossover([c["probe_answer_p"] for c in cs],
                                              [c["per_seed"][:S] for c in cs])
    base = {r["position"]: float(r["exact_match"]) for r in rows if r["objective"] == "base"}
    fit = [{"position": c["position"], "probe_answer_p": c["probe_answer_p"],
            "supervision": c["supervision"], "optimizer": c["optimizer"],
            "train_p_nll": c["nll_train_answer_p"], "train_p_p": c["train_answer_p"],
            "delta": c["delta"], "winner": "p" if c["delta"] > 0 else "nll" if c["delta"] < 0
            else "none", "fit_winner": "p" if c["train_answer_p"] > c["nll_train_answer_p"]
            else "nll"} for c in verdicts]
    alpha = best_alpha(rows)
    by_kind = {f"{sup}/{opt}": {v: sum(c["verdict"] == v for c in cs) for v in pred.VERDICTS}
               for (sup, opt), cs in pred.by_kind(verdicts).items()}
    return {"cells": cells, "counts": counts, "counts_by_kind": by_kind, "crossover": cross,
            "base_exact_match": base,
            "fit": fit, "alpha": alpha, "alpha_trend": alpha_trend(alpha),
            "adaptive": adaptive_vs_fixed(rows, margin)}


# an adaptive objective against the best fixed one: non-inferiority (probsft.verdicts "not_worse")
STATUS = {"confirmed": "not worse", "refuted": "worse", "inconclusive": "inconclusive"}


def alpha_of(spec: str) -> float | None:
    """α of an objective of the (1 − p^α)/α family with a fixed α: NLL is its α → 0 limit, −p its
    α = 1; None for every other objective (thresholds, DFT, the adaptive ones)."""
    import probsft

    obj = probsft.objective(spec)
    if obj.interval is not None or obj.needs_probe:
        return None
    if obj.family in ("nll", "p"):
        return 0.0 if obj.family == "nll" else 1.0
    if obj.family == "alpha":
        return float(obj.spec[len("alpha("):-1])
    return None


def best_alpha(rows: list[dict]) -> list[dict]:
    """Per (position, supervision, optimizer): the α of the (1 − p^α)/α family (NLL α = 0, −p
    α = 1, alpha(α)) with the highest mean exact match, when the grid ran ≥ 3 values of α; cells
    where the best value is shared by several α (e.g. all at the floor) are marked ``tied``."""
    groups: dict = {}
    for r in rows:
        a = None if r["objective"] == "base" else alpha_of(r["objective"])
        if a is not None:
            groups.setdefault((r["position"], r["supervision"], r["optimizer"]), {}).setdefault(
                a, []).append(float(r["exact_match"]))
    out = []
    for (pos, sup, opt), by_a in groups.items():
        if len(by_a) < 3:
            continue
        p = next(float(r["probe_answer_p"]) for r in rows if r["position"] == pos)
        means = {a: float(np.mean(v)) for a, v in by_a.items()}
        best = max(means, key=means.get)
        out.append({"position": pos, "probe_answer_p": p, "supervision": sup, "optimizer": opt,
                    "best_alpha": best, "tied": sum(m == means[best] for m in means.values()) > 1,
                    "means": {f"{a:g}": round(100 * m, 2) for a, m in sorted(means.items())}})
    return sorted(out, key=lambda x: (x["supervision"], x["optimizer"], x["probe_answer_p"]))


def alpha_trend(best: list[dict], perms: int = 10000, seed: int = 0) -> dict:
    """Per supervision/optimizer: Spearman's ρ between probe p and the best α over the untied
    positions, with a one-sided permutation p-value for the prediction that α rises with p."""
    from scipy.stats import rankdata, spearmanr

    out = {}
    for (sup, opt), group in pred.by_kind(best).items():
        bs = [b for b in group if not b["tied"]]
        x = np.array([b["probe_answer_p"] for b in bs])
        y = np.array([b["best_alpha"] for b in bs])
        if len(bs) < 3 or len(set(y)) < 2:
            out[f"{sup}/{opt}"] = {"n": len(bs), "rho": None, "p_value": None}
            continue
        rho = float(spearmanr(x, y).statistic)
        # the null: ρ of x with permuted y, i.e. the Pearson correlation of x's ranks with y's
        # ranks permuted (ties keep their average ranks), all permutations in one product
        rng = np.random.default_rng(seed)
        order = np.stack([rng.permutation(len(y)) for _ in range(perms)])
        rx, ry = rankdata(x), rankdata(y)[order]
        rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
        null = ry @ rx / np.sqrt((ry * ry).sum(axis=1) * (rx @ rx))
        out[f"{sup}/{opt}"] = {"n": len(bs), "rho": round(rho, 3),
                               "p_value": float((1 + np.sum(null >= rho - 1e-12)) / (1 + perms))}
    return out


def is_adaptive(spec: str) -> bool:
    """An objective that adapts to the model: it reads per-token statistics of the model's own
    distribution (DEFT's Σq²) or a parameter fixed from the probe (alpha(auto))."""
    import probsft

    obj = probsft.objective(spec)
    return bool(obj.token_stats or obj.base.probe_params)


def adaptive_vs_fixed(rows: list[dict], margin: float = pred.TIE_MARGIN) -> list[dict]:
    """Per (position, supervision, optimizer) and adaptive objective (:func:`is_adaptive`) in the
    grid: the paired difference against the best *fixed* objective of the cell (the highest mean
    exact match among the others, NLL included; chosen after the fact, so this favours the fixed
    side). ``status``: ``not worse`` when the one-sided 95% bound (the TOST interval's low end)
    lies above −margin, ``worse`` when the 95% CI lies below 0, else ``inconclusive``."""
    from probsft.validate.stats import paired

    by: dict = {}
    for r in rows:
        if r["objective"] != "base":
            by.setdefault((r["position"], r["supervision"], r["optimizer"]), {}).setdefault(
                r["objective"], {})[int(r["seed"])] = r
    out = []
    for (pos, sup, opt), objs in sorted(by.items()):
        fixed = {k: v for k, v in objs.items() if not is_adaptive(k)}
        for spec in (a for a in objs if is_adaptive(a)):
            if not fixed:
                continue
            best = max(fixed, key=lambda k: np.mean([float(r["exact_match"])
                                                    for r in fixed[k].values()]))
            seeds = sorted(set(objs[spec]) & set(fixed[best]))
            if len(seeds) < 2:
                continue
            st = paired(np.stack([_items(objs[spec][s]) for s in seeds]),
                        np.stack([_items(fixed[best][s]) for s in seeds]), margin)
            status = STATUS[verdict("not_worse", (st["ci_low"], st["ci_high"]),
                                    (st["tost_low"], st["tost_high"]), margin)]
            out.append({"position": pos, "probe_answer_p": float(objs[spec][seeds[0]]["probe_answer_p"]),
                        "supervision": sup, "optimizer": opt, "objective": spec,
                        "best_fixed": best, "delta": round(100 * st["delta"], 2),
                        "ci_low": round(100 * st["ci_low"], 2),
                        "ci_high": round(100 * st["ci_high"], 2),
                        "tost_low": round(100 * st["tost_low"], 2), "status": status})
    return sorted(out, key=lambda c: (c["objective"], c["supervision"], c["optimizer"],
                                      c["probe_answer_p"]))


def write_analysis(rows: list[dict], out: Path) -> dict:
    """Save paired.csv (exactly :data:`PAIRED_FIELDS`) and verdicts.json; returns the analysis as
    saved (floats to probsft.files.SIGNIFICANT digits)."""
    result = rounded(analyse(rows))
    write_rows(out / "paired.csv", [{k: c[k] for k in PAIRED_FIELDS} for c in result["cells"]],
               PAIRED_FIELDS)
    atomic_write_json(out / "verdicts.json", result, indent=1)
    return result
