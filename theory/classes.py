"""Which side of the continuum an objective sits on: the paper's class, and two statistics of W_f.

Paper (Li et al. 2025): Lemma 3.1 gives the logit-gradient weight W_f(p) = s_f(p)(1 - p) on the
target; Proposition 3.2: a concave f has every maximiser of W_f in [1/2, 1], a convex f in
[0, 1/2]; Definition 3.3: f is *prior-leaning* when most of W_f's mass sits on tokens with p above a
threshold tau (it refines predictions that are already plausible), *prior-averse* when below.

**The class** (:func:`paper_class`, what ``probsft describe`` prints as "class"), read from W_f:

1. A threshold f·1{p in I} that cuts only the low end (I = [tau, 1], or (tau, 1]) puts *all* of
   W_f's mass above tau: prior-leaning (Def. 3.3 with the threshold as tau; the paper's table:
   "leaning when I = [tau, 1]", so nll@p>=0.2 and OnlyTopP-q / OnlyTopLogP-q lean). One that cuts
   only the high end (I = [0, tau]) puts all of it below: prior-averse (OnlyBottomP-q,
   OnlyBottomLogP-q). The threshold moves the mass whatever the shape of W_f inside I.
2. Otherwise (no threshold, or a band cut at both ends) the side of p = 1/2 where W_f peaks
   decides: argmax W_f < 1/2 is prior-averse, >= 1/2 prior-leaning. This is Prop. 3.2's split
   (convex f peaks in [0, 1/2], concave f in [1/2, 1]), read on W_f itself so that it also covers an
   f that is neither, or a stop-gradient weight. A peak exactly at 1/2 (−p, DFT, Huber with
   delta <= 1/2, whose W_f vanishes at p = 0) is the paper's "boundary / leaning": leaning.
   So NLL (peak p -> 0), alpha(A) for A < 1 (peak A/(1+A)) and focal are prior-averse; −p, alpha(A)
   for A >= 1, log(1-p) (peak p -> 1), DFT and huber(0.5) are prior-leaning.
3. An adaptive objective (f uses a token statistic of q, or a probe-set parameter) is a family of
   curves: each member at the statistic's sample values (probsft.theory.statistics) is classified
   by 1-2. If all agree, that is the class (EAFT: W_f = (H/C)^A (1 - p) is NLL's shape at every
   entropy: prior-averse); if not, "adaptive", with the members' classes as the reason (DEFT:
   alpha = sum q^2 in (0, 1] makes it averse for spread q and −p, leaning, for one-hot q).
4. An anchored objective (ASFT's KL term to the base model) is classified by its f; the anchor,
   whose gradient lambda (q - r) does not depend on p, is named in the reason (the paper, §5,
   reads KL anchors as prior-leaning mechanisms).

**Two statistics** are kept beside the class (second columns of ``describe`` and the tables):
``prior_class`` compares the W-weighted mean of p, m_f(mu) = int p W_f dmu / int W_f dmu, with NLL's
(m = 1/3 under mu uniform on (0, 1)): leaning relative to NLL iff m_f > m_NLL, so NLL itself is
"neither" (it is the reference), and every alpha > 0 leans relative to it. ``mass_above`` is the
share of W_f's mass above tau (``class_tau``), which calls −p "neither" at tau = 1/2. Integrals are
taken piecewise between the interval's endpoints and tau, so a threshold's jump is exact
(NLL·1{p >= 0.2}: mass above 1/2 = 0.125/0.32 = 0.390625).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import sympy

from probsft.theory.objective import Objective, Quantile, fmt_number
from probsft.theory.spec import parse
from probsft.theory.statistics import PROBE_PARAMS, token_statistic

LEANING, AVERSE, NEITHER, ADAPTIVE = "prior-leaning", "prior-averse", "neither", "adaptive"
PEAK_TOL = 1e-6       # a numeric argmax within this of 1/2 counts as the boundary peak 1/2

_EDGE = 1e-7          # a numeric peak closer than this to 0 or 1 is reported as p -> 0 / p -> 1
GRID = np.unique(np.concatenate([np.logspace(-12, np.log10(0.5), 1500),
                                  1 - np.logspace(-12, np.log10(0.5), 1500),
                                  np.linspace(1e-6, 1 - 1e-6, 4001)]))


def interval_bounds(obj: Objective) -> tuple[float, float]:
    if obj.interval is None:
        return 0.0, 1.0
    if obj.interval.has_quantile:
        return 0.0, 1.0
    return float(obj.interval.lo), float(obj.interval.hi)


def _W_numeric(obj: Objective, x):
    with np.errstate(all="ignore"):
        if obj.interval is not None and obj.interval.has_quantile:
            return obj.base.W(x)
        return obj.W(x)


def _breaks(obj: Objective, *extra) -> list[float]:
    """0, 1, the threshold interval's finite endpoints and ``extra``, sorted: integration pieces."""
    lo, hi = interval_bounds(obj)
    return sorted({0.0, 1.0, lo, hi, *(float(x) for x in extra)})


_T = np.arange(-4.5, 4.5 + 1e-12, 1 / 64)          # tanh-sinh nodes in t, [577]


def _integral(g, a: float, b: float) -> float:
    """int_a^b g on one piece where g is smooth inside: tanh-sinh (double-exponential) quadrature,
    one vectorised call of g; exact to ~1e-12 even with integrable end singularities.

    x = a + (b - a) u(t),  u = 1/(1 + exp(-pi sinh t)),  dx = (b - a) u (1 - u) pi cosh t dt;
    points near b are written as b - (b - a)(1 - u) so that they do not round onto b.
    """
    if b <= a:
        return 0.0
    e = np.pi * np.sinh(_T)
    u = np.where(e < 0, np.exp(np.minimum(e, 0)) / (1 + np.exp(np.minimum(e, 0))),
                 1 / (1 + np.exp(-np.maximum(e, 0))))                 # u(t), overflow-safe
    v = np.where(e > 0, np.exp(-np.maximum(e, 0)) / (1 + np.exp(-np.maximum(e, 0))),
                 1 / (1 + np.exp(np.minimum(e, 0))))                  # 1 - u(t)
    x = np.where(e <= 0, a + (b - a) * u, b - (b - a) * v)
    w = (b - a) * u * v * np.pi * np.cosh(_T) / 64
    ok = (x > a) & (x < b) & (w > 0)
    with np.errstate(all="ignore"):
        vals = np.asarray(g(x[ok]), dtype=float) * np.ones(int(ok.sum()))
    return float(np.sum(np.nan_to_num(vals, posinf=0.0, neginf=0.0) * w[ok]))


def _divergence(obj: Objective) -> tuple[bool, bool]:
    """Whether int W_f diverges at p -> 0 and at p -> 1 (W ~ u^k is integrable iff k > -1, i.e.
    iff u·W vanishes as the distance u to the end goes to 0)."""
    u = np.array([1e-6, 1e-14])
    with np.errstate(all="ignore"):
        at0, at1 = u * _W_numeric(obj, u), u * _W_numeric(obj, 1 - u)
    d0 = bool(at0[1] > 1e-30 and (not np.isfinite(at0[1]) or at0[1] >= 0.5 * at0[0]))
    d1 = bool(at1[1] > 1e-30 and (not np.isfinite(at1[1]) or at1[1] >= 0.5 * at1[0]))
    return d0, d1


def mass_above(obj: Objective, tau: float) -> float:
    """int_tau^1 W / int_0^1 W, integrated piecewise; a non-integrable end decides outright."""
    d0, d1 = _divergence(obj)
    if d0 and d1:
        return float("nan")
    if d0 or d1:
        return 0.0 if d0 else 1.0
    pts = _breaks(obj, tau)
    pieces = [(a, b, _integral(lambda x: _W_numeric(obj, x), a, b)) for a, b in zip(pts, pts[1:])]
    total = sum(v for _, _, v in pieces)
    above = sum(v for a, _, v in pieces if a >= tau)
    return float(above / total) if total > 0 else float("nan")


def w_mean_p(obj, target_p=None) -> float:
    """m_f(mu) = int p W_f dmu / int W_f dmu (Def. 3.3 statistic): mu uniform on (0, 1), or the
    empirical distribution of ``target_p`` (an array of target probabilities); NaN when W_f has
    no mass under mu. A non-integrable end puts all the mass there (0 or 1)."""
    obj = parse(obj)
    if target_p is not None:
        x = np.asarray(target_p, dtype=float).ravel()
        x = x[(x > 0) & (x < 1)]
        with np.errstate(all="ignore"):
            w = np.nan_to_num(_W_numeric(obj, x), posinf=0.0)
        return float(np.sum(x * w) / np.sum(w)) if np.sum(w) > 0 else float("nan")
    d0, d1 = _divergence(obj)
    if d0 and d1:
        return float("nan")
    if d0 or d1:
        return 0.0 if d0 else 1.0
    pts = _breaks(obj)
    num = sum(_integral(lambda x: x * _W_numeric(obj, x), a, b) for a, b in zip(pts, pts[1:]))
    den = sum(_integral(lambda x: _W_numeric(obj, x), a, b) for a, b in zip(pts, pts[1:]))
    return float(num / den) if den > 0 else float("nan")


def prior_class(obj, target_p=None) -> tuple[str, float, float]:
    """Def. 3.3 relative to NLL: (class, m_f, m_NLL) under mu (uniform, or ``target_p``'s
    empirical distribution). prior-leaning iff m_f > m_NLL, prior-averse iff m_f < m_NLL."""
    m, ref = w_mean_p(obj, target_p), w_mean_p("nll", target_p)
    if not (np.isfinite(m) and np.isfinite(ref)) or abs(m - ref) <= 1e-9 * max(1.0, abs(ref)):
        return "neither", m, ref
    return ("prior-leaning" if m > ref else "prior-averse"), m, ref


def peak(obj, lo, hi, roots=None):
    """(argmax of W_f on [lo, hi], its closed form or None, kind, W_f there): kind "p->0" / "p->1"
    for a peak at an end of (0, 1), "I boundary" at a threshold's endpoint, else "interior" (a
    closed-form root from ``roots`` when one matches the numeric argmax)."""
    x = GRID[(GRID >= lo) & (GRID <= hi)]
    w = _W_numeric(obj, x)
    w = np.where(np.isfinite(w), w, -np.inf)   # overflow in a user expression: skip the point
    i = int(np.argmax(w))
    xi, wi = float(x[i]), float(w[i])
    if xi < _EDGE and lo == 0.0:
        return 0.0, None, "p->0", wi
    if xi > 1 - _EDGE and hi == 1.0:
        return 1.0, None, "p->1", wi
    if obj.interval is not None and (abs(xi - lo) < 1e-6 or abs(xi - hi) < 1e-6):
        return (lo if abs(xi - lo) < 1e-6 else hi), None, "I boundary", wi
    for r in roots or []:
        if abs(float(r) - xi) < 2e-3:
            return float(r), sympy.sstr(r), "interior", float(_W_numeric(obj, np.array([float(r)]))[0])
    from scipy.optimize import minimize_scalar

    a, b = float(x[max(i - 1, 0)]), float(x[min(i + 1, len(x) - 1)])
    res = minimize_scalar(lambda t: -float(_W_numeric(obj, np.array([t]))[0]), bounds=(a, b),
                          method="bounded", options={"xatol": 1e-12})
    return float(res.x), None, "interior", float(-res.fun)


def paper_class(obj) -> tuple[str, str]:
    """(class, reason): the paper's class of ``obj`` (module docstring, rules 1-4)."""
    obj = parse(obj)
    if obj.token_stats or obj.probe_params:
        klass, reason = _adaptive_class(obj)
    else:
        klass, reason = _fixed_class(obj)
    if obj.anchor is not None:
        reason += (f"; plus the KL anchor {fmt_number(obj.anchor)}·KL(base || model), whose logit "
                   "gradient does not depend on p (read as prior-leaning in the paper's §5)")
    return klass, reason


def _fixed_class(obj: Objective) -> tuple[str, str]:
    I = obj.interval
    if I is not None:
        cuts_low = _is_quantile(I.lo) or not (I.lo == 0 and I.lo_closed)
        cuts_high = _is_quantile(I.hi) or not (I.hi == 1 and I.hi_closed)
        if cuts_low and not cuts_high:
            return LEANING, (f"the threshold keeps only {I.pretty()}: all of W_f's mass lies above "
                             f"tau = {_text(I.lo)} (Def. 3.3; the paper: leaning when I = [tau, 1])")
        if cuts_high and not cuts_low:
            return AVERSE, (f"the threshold keeps only {I.pretty()}: all of W_f's mass lies below "
                            f"tau = {_text(I.hi)} (Def. 3.3)")
    lo, hi = interval_bounds(obj)
    x, _, kind, w = peak(obj, lo, hi)
    where = {"p->0": "p -> 0", "p->1": "p -> 1"}.get(kind, f"p = {x:.4g}")
    if not (np.isfinite(w) and w > 0):
        return NEITHER, "W_f has no positive maximum on (0, 1)"
    if abs(x - 0.5) <= PEAK_TOL:
        return LEANING, ("W_f peaks at p = 1/2, the boundary of Prop. 3.2, which the paper counts as "
                         "leaning (−p)")
    side = "below" if x < 0.5 else "above"
    return (AVERSE if x < 0.5 else LEANING), (
        f"W_f peaks at {where}, {side} 1/2 (Prop. 3.2: convex f peaks in [0, 1/2] -> averse, "
        "concave f in [1/2, 1] -> leaning)")


def _is_quantile(b) -> bool:
    return isinstance(b, Quantile)


def _text(b) -> str:
    return str(b) if _is_quantile(b) else fmt_number(b)


def _adaptive_class(obj: Objective) -> tuple[str, str]:
    """Classify each member of the family at the sample values of its statistics/parameters."""
    symbols = [(n, token_statistic(n)) for n in obj.token_stats] + \
              [(n, PROBE_PARAMS[n]) for n in obj.probe_params]
    found: dict[str, list[str]] = {}
    why = ""
    for values in itertools.product(*(stat.samples for _, stat in symbols)):
        sub = {stat.symbol: v for (_, stat), v in zip(symbols, values)}
        member = dataclasses.replace(
            obj, f_expr=obj.f_expr.subs(sub), probe_build=None,
            s_override=None if obj.s_override is None else obj.s_override.subs(sub))
        text = ", ".join(f"{n} = {_short(v)}" for (n, _), v in zip(symbols, values))
        klass, why = _fixed_class(member)
        found.setdefault(klass, []).append(text)
    names = ", ".join(n for n, _ in symbols)
    if len(found) == 1:
        klass = next(iter(found))
        return klass, (f"the same at every value of {names} tried ({'; '.join(found[klass])}): "
                       f"{why}")
    return ADAPTIVE, (f"W_f's peak moves across 1/2 with {names}: " +
                      "; ".join(f"{k} at {', '.join(v)}" for k, v in found.items()))


def _short(v) -> str:
    return fmt_number(v) if v.is_Rational else f"{float(v):.3g}"
