"""Paired statistics of the real-model grid: objective minus NLL within each seed.

Within a seed every objective starts from the same weights, sees the same batches and the same
supervision noise, so the comparison is the *paired* difference per seed and held-out item,

    d[s, i] = correct_objective[s, i] − correct_nll[s, i]        (s: seed, i: held-out item)
    Δ = mean_{s,i} d[s, i]                                        (the cell's effect)

Two sources of uncertainty, each with its interval at a level L:

* seeds: a t-interval of the per-seed means d̄_s (df = S − 1; needs S ≥ 2);
* items: a percentile bootstrap over held-out items (the same resampled items for every seed),
  of the mean over seeds; its seed is fixed, so the interval is a pure function of the data.

A conclusion must hold under both, so the reported interval is their union (the lower of the lows,
the higher of the highs). The 95% union is ``ci``; the 90% union is the TOST interval: the cell is
*equivalent* at margin m when it lies inside (−m, m) (two one-sided tests at 5%).

The minimum detectable effect (80% power, two-sided 5%) is (t_{0.975, S−1} + t_{0.80, S−1}) · SE with
SE the larger of the seed standard error and the bootstrap standard deviation.

:func:`crossover` locates where the paired difference crosses 0 along the probe p: a least-squares
line through the positions' Δ, its root, and a bootstrap over seeds of that root.
"""

from __future__ import annotations

import math

import numpy as np

BOOT = 2000            # bootstrap replicates
BOOT_SEED = 12345      # fixed: the intervals are a pure function of the saved numbers
POWER = 0.8


def _t(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def seed_interval(per_seed, level: float) -> tuple[float, float]:
    """t-interval of the mean of the per-seed differences (S ≥ 2)."""
    d = np.asarray(per_seed, float)
    if len(d) < 2:
        raise ValueError("a seed interval needs at least two seeds")
    half = _t(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def item_bootstrap(diff, level: float, boot: int = BOOT, seed: int = BOOT_SEED):
    """(low, high, sd) of the percentile bootstrap over items of mean_{s,i} diff[s, i]."""
    diff = np.asarray(diff, float)
    per_item = diff.mean(axis=0)                                   # [N]: the mean over seeds
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_item), size=(boot, len(per_item)))
    means = per_item[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi), float(means.std(ddof=1))


def paired(objective, nll, margin: float = 0.02, boot: int = BOOT) -> dict:
    """Paired comparison of one cell; ``objective`` and ``nll`` are [S, N] per-item scores (0/1 exact
    match) of the same seeds and items, or [S] per-seed scores (then only the seed interval).

    Returns delta, ci_low/ci_high (95%), tost_low/tost_high (90%), mde, se_seed, se_item, n_seeds.
    """
    a, b = np.asarray(objective, float), np.asarray(nll, float)
    if a.shape != b.shape or a.ndim not in (1, 2):
        raise ValueError(f"paired scores need one shape [S] or [S, N], got {a.shape} and {b.shape}")
    diff = a - b
    per_seed = diff if diff.ndim == 1 else diff.mean(axis=1)
    S = len(per_seed)
    c95, c90 = seed_interval(per_seed, 0.95), seed_interval(per_seed, 0.90)
    se_seed = float(per_seed.std(ddof=1) / math.sqrt(S))
    se_item = 0.0
    if diff.ndim == 2:
        lo95, hi95, se_item = item_bootstrap(diff, 0.95, boot)
        lo90, hi90, _ = item_bootstrap(diff, 0.90, boot)
        c95 = (min(c95[0], lo95), max(c95[1], hi95))
        c90 = (min(c90[0], lo90), max(c90[1], hi90))
    mde = (_t(0.975, S - 1) + _t(POWER, S - 1)) * max(se_seed, se_item)
    return {"n_seeds": S, "delta": float(per_seed.mean()), "ci_low": c95[0], "ci_high": c95[1],
            "tost_low": c90[0], "tost_high": c90[1], "mde": float(mde), "se_seed": se_seed,
            "se_item": se_item}


def unpaired_tie_rule(a, b, min_gap: float) -> bool:
    """The superseded rule: a tie when |Δ| ≤ max(min_gap, 2·SE), SE of two independent means.
    Kept only so the tests can show where it and the paired TOST disagree."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) <= max(min_gap, 2 * se)


def _isotonic(x, y):
    """(x sorted, the non-decreasing least-squares fit of y on it)."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(x, kind="stable")
    return np.asarray(x, float)[order], isotonic_regression(np.asarray(y, float)[order]).x


def _fit_root(xs, fit) -> float | None:
    up = np.flatnonzero(fit > 0)
    if not len(up) or up[0] == 0:
        return None
    i, j = up[0] - 1, up[0]
    return float(xs[i] + (xs[j] - xs[i]) * (0 - fit[i]) / (fit[j] - fit[i]))


def monotone_root(x, y) -> float | None:
    """Where the non-decreasing (isotonic, least-squares) fit of y on x first turns positive: the
    zero of the linear interpolation between the last fitted value ≤ 0 and the first > 0 that
    follows it. None when the fit never turns positive after being ≤ 0 (no crossing)."""
    return _fit_root(*_isotonic(x, y))


def crossover(probe_p, per_seed, boot: int = BOOT, seed: int = BOOT_SEED) -> dict:
    """Where the paired difference Δ(p) crosses 0 going up, with a bootstrap-over-seeds 95% CI.

    The estimate is :func:`monotone_root` of the positions' mean Δ: the paper's prediction is a Δ
    that rises with p (NLL ahead at weak priors, the prior-leaning objective at strong ones), and
    the isotonic fit assumes only that order, not a line (a least-squares line was pulled towards
    the weak end's floor of Δ = 0, where nothing is learned). ``probe_p``: [P] positions;
    ``per_seed``: [P, S] paired differences (seed s of every position resampled together).
    Returns p (None without a crossing), ci (the 2.5/97.5% quantiles of the replicates' roots, of
    those that have one, else None), frac_in_range (the share of replicates with a crossing),
    sign_changes (of the mean Δ between neighbouring positions: > 1 means it is not monotone) and
    slope (of a least-squares line, for reference).
    """
    x = np.asarray(probe_p, float)
    y = np.asarray(per_seed, float)
    if y.ndim != 2 or y.shape[0] != len(x) or len(x) < 2:
        raise ValueError("crossover needs [P] positions and [P, S] differences, P >= 2")
    mean = y.mean(axis=1)
    r0 = monotone_root(x, mean)
    rng = np.random.default_rng(seed)
    S = y.shape[1]
    roots = [monotone_root(x, y[:, rng.integers(0, S, S)].mean(axis=1)) for _ in range(boot)]
    ok = np.array([r for r in roots if r is not None])
    ci = (float(np.quantile(ok, 0.025)), float(np.quantile(ok, 0.975))) if len(ok) else None
    signs = np.sign(mean[np.argsort(x, kind="stable")])
    signs = signs[signs != 0]
    return {"p": r0, "ci": ci, "frac_in_range": len(ok) / boot,
            "sign_changes": int(np.sum(signs[1:] != signs[:-1])),
            "slope": float(np.polyfit(x, mean, 1)[0])}

def censored_root(x, y) -> tuple[float, str | None]:
    """:func:`monotone_root`, censored at the probed range when there is no crossing: (the root,
    None), or (the lowest p, "below") when the isotonic fit is positive everywhere, or (the highest
    p, "above") when it never turns positive. A censored value is the nearest the crossing can be,
    so a shift computed from it is the smallest one the positions allow."""
    xs, fit = _isotonic(x, y)                       # one fit for the root and the censoring
    r = _fit_root(xs, fit)
    if r is not None:
        return r, None
    return (float(xs[0]), "below") if fit[0] > 0 else (float(xs[-1]), "above")


def crossover_shift(probe_a, per_seed_a, probe_b, per_seed_b, boot: int = BOOT,
                    seed: int = BOOT_SEED) -> dict:
    """How far the crossover moves from curve a to curve b (two models: unpaired seeds).

    Each curve is as :func:`crossover`'s ([P] probe p, [P, S] paired differences); its crossing is
    :func:`censored_root`. The shift is b − a; its intervals come from a bootstrap that resamples
    each curve's seeds independently (``boot`` replicates): ``ci`` the 2.5/97.5% quantiles,
    ``ci90`` the 5/95% ones (the TOST interval of an equivalence test). Returns a, b (the
    point estimates), censored_a, censored_b ("below"/"above"/None), shift, ci, ci90, ci_a and
    ci_b (each crossing's own 95% interval, from the same censored replicates: an end at the
    probed range's edge means "at least/at most") and frac_censored (the share of replicates where
    either crossing was censored)."""
    xa, ya = np.asarray(probe_a, float), np.asarray(per_seed_a, float)
    xb, yb = np.asarray(probe_b, float), np.asarray(per_seed_b, float)
    for x, y in ((xa, ya), (xb, yb)):
        if y.ndim != 2 or y.shape[0] != len(x) or len(x) < 2 or y.shape[1] < 2:
            raise ValueError("crossover_shift needs [P] positions and [P, S] differences, "
                             "P >= 2, S >= 2, for each curve")
    a, ca = censored_root(xa, ya.mean(axis=1))
    b, cb = censored_root(xb, yb.mean(axis=1))
    rng = np.random.default_rng(seed)
    roots, censored = np.empty((boot, 2)), 0
    for k in range(boot):
        ra, fa = censored_root(xa, ya[:, rng.integers(0, ya.shape[1], ya.shape[1])].mean(axis=1))
        rb, fb = censored_root(xb, yb[:, rng.integers(0, yb.shape[1], yb.shape[1])].mean(axis=1))
        roots[k] = ra, rb
        censored += fa is not None or fb is not None
    q = lambda v, *ps: [float(np.quantile(v, p)) for p in ps]
    shifts = roots[:, 1] - roots[:, 0]
    return {"a": a, "b": b, "censored_a": ca, "censored_b": cb, "shift": b - a,
            "ci": q(shifts, 0.025, 0.975), "ci90": q(shifts, 0.05, 0.95),
            "ci_a": q(roots[:, 0], 0.025, 0.975), "ci_b": q(roots[:, 1], 0.025, 0.975),
            "frac_censored": censored / boot}
