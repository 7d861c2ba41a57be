"""Symbolic (sympy) derivations for an objective f(p): s_f, W_f, the peak of W_f, convexity, class.

Paper (Li et al. 2025) Lemma 3.1: s_f(p) = -f'(p) p (or DFT's stop-gradient override) and
W_f(p) = s_f(p)(1 - p), the logit-gradient weight on the target. Proposition 3.2: a concave f has
every maximiser of W_f in [1/2, 1], a convex f in [0, 1/2]. Definition 3.3, as the paper uses it
(it calls −p and NLL·1{p ≥ 0.2} prior-leaning): f is *prior-leaning* when its W_f puts more of its
mass towards p -> 1 than NLL's W = 1 - p does, *prior-averse* when less. The statistic is the
W-weighted mean of p,

    m_f(mu) = int p W_f(p) dmu(p) / int W_f(p) dmu(p)      (NLL: m = 1/3 for mu uniform on (0, 1))

under the uniform mu by default, or under a given distribution of target p (e.g. a probe's
histogram): leaning iff m_f(mu) > m_NLL(mu). A second, documented statistic is kept: the share of
the W_f mass above tau (``mass_above_tau``, ``class_tau``), which calls −p "neither" at tau = 1/2.
Integrals are taken piecewise between the interval's endpoints and tau, so the jump of a
threshold is exact (NLL·1{p >= 0.2}: mass above 1/2 = 0.125/0.32 = 0.390625).

``derive(obj)`` returns a frozen :class:`Derivation`. Sympy is asked for a closed-form argmax and the
sign of f'' (f' = -s_f/p, so DFT's effective f is that of 1 - p) only for a tractable expression and
in a forked process with a time and memory limit (probsft.theory.bounded.bounded), so a user expression
can never hang; a dense numeric grid answers otherwise. Thresholds
f·1{p in I} restrict the peak search and convexity to I. Run
``python -m probsft.theory.symbolic SPEC...`` to print a table.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import sympy
from probsft.theory.bounded import TIME_LIMIT_S, bounded, simplified, tractable
from probsft.theory.expr import p
from probsft.theory.numeric import compile_in_p
from probsft.theory.objective import Objective, fmt_number
from probsft.theory.spec import parse
_EDGE = 1e-7          # a numeric peak closer than this to 0 or 1 is reported as p -> 0 / p -> 1
_GRID = np.unique(np.concatenate([np.logspace(-12, np.log10(0.5), 1500),
                                  1 - np.logspace(-12, np.log10(0.5), 1500),
                                  np.linspace(1e-6, 1 - 1e-6, 4001)]))


@dataclasses.dataclass(frozen=True)
class Derivation:
    """Everything ``probsft describe`` prints about one objective (strings are sympy / LaTeX)."""

    spec: str
    label: str
    f: str
    s_f: str
    W_f: str
    f_latex: str
    s_latex: str
    W_latex: str
    interval: str | None
    peak: float                 # argmax of W_f on I subset [0, 1] (0.0 / 1.0 for boundary peaks)
    peak_exact: str | None      # closed form when sympy found it, e.g. "1/3"
    peak_kind: str              # "interior", "p->0", "p->1", "I boundary"
    peak_W: float               # W_f at the peak (inf when W_f is unbounded there)
    convexity: str              # convex / concave / linear / neither (of the effective f on I)
    convexity_by: str           # "sympy" or "numeric"
    klass: str                  # prior-leaning / prior-averse / neither: relative to NLL (Def. 3.3)
    w_mean_p: float             # m_f: W_f-weighted mean of p (uniform measure)
    nll_w_mean_p: float         # m_NLL = 1/3 under the same measure
    tau: float
    mass_above_tau: float       # share of the W_f mass on (tau, 1] (second statistic)
    class_tau: str              # the class by mass_above_tau > 1/2 (second statistic)
    prop32_consistent: bool | None  # Prop. 3.2 holds (None when f is neither convex nor concave)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["class"] = d.pop("klass")
        # strict JSON: inf -> "inf" (an unbounded W_f), nan -> None (undetermined)
        return {k: (v if not isinstance(v, float) or np.isfinite(v) else
                    None if np.isnan(v) else ("inf" if v > 0 else "-inf")) for k, v in d.items()}


# ---------------------------------------------------------------------------------------------
# sympy within bounds


def _sympy_facts(W, fpp, lo, hi):
    """(closed-form interior roots of W' in (lo, hi), sign of f'' on (0, 1)); may be slow."""
    roots = []
    try:
        sols = sympy.solve(sympy.Eq(sympy.diff(W, p), 0), p)
        for r in sols:
            if r.is_real and r.is_number and lo < float(r) < hi:
                roots.append(sympy.nsimplify(r) if r.is_Rational else r)
    except Exception:  # noqa: BLE001 - no closed form: the numeric search answers
        roots = None
    sign = None
    t = sympy.Symbol("t", positive=True)             # p = 1/(1 + t) covers exactly p in (0, 1)
    g = sympy.simplify(fpp.subs(p, 1 / (1 + t)))
    if g.is_zero:
        sign = "linear"
    elif g.is_nonnegative:
        sign = "convex"
    elif g.is_nonpositive:
        sign = "concave"
    return roots, sign


def _timed_facts(W, fpp, lo, hi, limit=TIME_LIMIT_S):
    if W.has(sympy.Piecewise) or fpp.has(sympy.Piecewise) or not tractable(W, fpp):
        return None, None
    return bounded(_sympy_facts, W, fpp, lo, hi, default=(None, None), limit=limit)


# ---------------------------------------------------------------------------------------------
# numeric pieces


def _interval_bounds(obj: Objective) -> tuple[float, float]:
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
    lo, hi = _interval_bounds(obj)
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


def _mass_above(obj: Objective, tau: float) -> float:
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


def _numeric_convexity(obj: Objective, lo: float, hi: float) -> str:
    fp = -obj.s_expr / p
    fpp = sympy.diff(fp, p)
    x = _GRID[(_GRID > lo) & (_GRID < hi)]
    with np.errstate(all="ignore"):
        v = np.asarray(compile_in_p(fpp)(x), dtype=float) * np.ones_like(x)
        scale = np.abs(np.asarray(compile_in_p(fp)(x), dtype=float)) / x   # size of f''s terms
    ok = np.isfinite(v) & np.isfinite(scale)
    if not np.any(ok):
        return "neither"
    v, tol = v[ok], 1e-7 * (scale[ok] + 1.0)                   # cancellation-aware tolerance
    pos, neg = bool(np.any(v > tol)), bool(np.any(v < -tol))
    return {(False, False): "linear", (True, False): "convex", (False, True): "concave"}.get(
        (pos, neg), "neither")


def _peak(obj, lo, hi, roots):
    x = _GRID[(_GRID >= lo) & (_GRID <= hi)]
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


# ---------------------------------------------------------------------------------------------


def derive(obj, tau: float = 0.5, time_limit: float = TIME_LIMIT_S) -> Derivation:
    """Derive s_f, W_f, the peak of W_f, convexity and the Def. 3.3 class of one objective."""
    from probsft.errors import UserError

    obj = parse(obj)
    if not 0 < tau < 1:
        raise UserError(f"tau must lie in (0, 1), got {tau}")
    if obj.probe_params:
        raise UserError(f"{obj.spec} is alpha(A) with A set from the base model's probe (mean p / "
                        "(1 - mean p), in [0, 10]); run `probsft recommend` or `probsft probe` for "
                        "A, then derive alpha(A)")
    if obj.token_stats:
        raise UserError(f"{obj.spec}: f depends on {', '.join(obj.token_stats)} of the model's "
                        "next-token distribution as well as on p, so W_f(p) is a family of curves, "
                        "not one; derive a fixed member instead (DEFT at sum q^2 = a is alpha(a))")
    s, W = obj.s_expr, obj.W_expr
    lo, hi = _interval_bounds(obj)
    fpp = simplified(sympy.diff(-s / p, p))
    roots, sign = _timed_facts(W, fpp, lo, hi, time_limit)
    peak, exact, kind, peak_w = _peak(obj, lo, hi, roots)
    convexity, by = (sign, "sympy") if sign and obj.interval is None else (
        _numeric_convexity(obj, lo, hi), "numeric")
    mass = _mass_above(obj, tau)
    class_tau = ("neither" if not np.isfinite(mass) or abs(mass - 0.5) < 1e-9
                 else "prior-leaning" if mass > 0.5 else "prior-averse")
    klass, m, m_nll = prior_class(obj)
    consistent = {"convex": peak <= 0.5 + 1e-6, "concave": peak >= 0.5 - 1e-6,   # numeric peaks: 1e-6
                  "linear": abs(peak - 0.5) < 1e-6}.get(convexity)   # both: peak at 1/2
    return Derivation(
        spec=obj.spec, label=obj.label, f=sympy.sstr(obj.f_expr), s_f=sympy.sstr(s),
        W_f=sympy.sstr(W), f_latex=sympy.latex(obj.f_expr), s_latex=sympy.latex(s),
        W_latex=sympy.latex(W), interval=None if obj.interval is None else str(obj.interval),
        peak=peak, peak_exact=exact, peak_kind=kind, peak_W=peak_w, convexity=convexity,
        convexity_by=by, klass=klass, w_mean_p=m, nll_w_mean_p=m_nll, tau=float(tau),
        mass_above_tau=mass, class_tau=class_tau, prop32_consistent=consistent)


def alpha_family() -> dict[str, sympy.Expr]:
    """The alpha family f = (1 - p^a)/a with a > 0 symbolic (Eq. 3): s, W, the peak a/(1+a), f''."""
    a = sympy.Symbol("alpha", positive=True)
    f = (1 - p ** a) / a
    s = sympy.simplify(-sympy.diff(f, p) * p)
    W = sympy.simplify(s * (1 - p))
    peak = sympy.solve(sympy.Eq(sympy.diff(W, p), 0), p)
    return {"alpha": a, "f": f, "s_f": s, "W_f": W, "peak": sympy.simplify(peak[0]),
            "f_second": sympy.simplify(sympy.diff(f, p, 2))}


def table(specs, tau: float = 0.5) -> list[Derivation]:
    """derive() for many objectives, in order."""
    return [derive(s, tau) for s in specs]


def peak_text(d: Derivation) -> str:
    if d.peak_kind in ("p->0", "p->1"):
        return d.peak_kind.replace("->", "→")
    return d.peak_exact if d.peak_exact else f"{d.peak:.4g}"


def markdown_table(derivations) -> list[str]:
    """Markdown lines: objective, f, s_f, W_f, peak, convexity, class (Def. 3.3 vs NLL; τ-mass)."""
    lines = ["| objective | f(p) | s_f(p) | W_f(p) | argmax W_f | convexity | "
             "class vs NLL (W-mean p; NLL 1/3) | τ-mass class (τ, mass above) |",
             "|---|---|---|---|---|---|---|---|"]
    for d in derivations:
        cls = (f"{d.klass} ({d.w_mean_p:.3f}) | {d.class_tau} "
               f"({fmt_number(sympy.Rational(repr(d.tau)))}, {d.mass_above_tau:.4f})")
        cond = f" on {d.interval}" if d.interval else ""
        lines.append(f"| `{d.spec}` | `{d.f}`{cond} | `{d.s_f}` | `{d.W_f}` | {peak_text(d)} | "
                     f"{d.convexity} | {cls} |")
    return lines


if __name__ == "__main__":
    from probsft.theory.spec import registered

    print("\n".join(markdown_table(table(sys.argv[1:] or registered()))))
