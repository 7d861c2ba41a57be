"""Symbolic (sympy) derivations for an objective f(p): s_f, W_f, the peak of W_f, convexity, class.

Paper (Li et al. 2025) Lemma 3.1: s_f(p) = -f'(p) p (or a stop-gradient override such as DFT's)
and W_f(p) = s_f(p)(1 - p), the logit-gradient weight on the target. Proposition 3.2: a concave f
has every maximiser of W_f in [1/2, 1], a convex f in [0, 1/2]. The class (prior-leaning /
prior-averse, Def. 3.3, as the paper assigns it) and the two statistics beside it (W-weighted mean
of p against NLL's; share of W_f's mass above tau) come from probsft.theory.classes.

``derive(obj)`` returns a frozen :class:`Derivation`. Sympy is asked for a closed-form argmax and the
sign of f'' (f' = -s_f/p, so DFT's effective f is that of 1 - p) only for a tractable expression and
in a forked process with a time and memory limit (probsft.theory.bounded.bounded), so a user
expression can never hang; a dense numeric grid answers otherwise. Thresholds f·1{p in I} restrict
the peak search and convexity to I. An adaptive objective (f uses a token statistic or a probe-set
parameter) gets its symbolic s_f and W_f and its class; its peak, convexity and statistics depend on
those inputs and are left undetermined (NaN). Run ``python -m probsft.theory.symbolic SPEC...`` to
print a table.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import sympy
from probsft.theory.bounded import TIME_LIMIT_S, bounded, simplified, tractable
from probsft.theory.classes import (GRID, interval_bounds, mass_above, paper_class, peak,
                                    prior_class, w_mean_p)
from probsft.theory.expr import p
from probsft.theory.numeric import compile_in_p
from probsft.theory.objective import Objective, fmt_number
from probsft.theory.spec import parse

__all__ = ["Derivation", "derive", "table", "markdown_table", "peak_text", "alpha_family",
           "paper_class", "prior_class", "w_mean_p"]


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
    klass: str                  # the paper's class: prior-leaning / prior-averse / adaptive / neither
    class_reason: str           # why (probsft.theory.classes.paper_class)
    class_vs_nll: str           # Def. 3.3 statistic relative to NLL (NLL itself: neither)
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


def _numeric_convexity(obj: Objective, lo: float, hi: float) -> str:
    fp = -obj.s_expr / p
    fpp = sympy.diff(fp, p)
    x = GRID[(GRID > lo) & (GRID < hi)]
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


# ---------------------------------------------------------------------------------------------


def derive(obj, tau: float = 0.5, time_limit: float = TIME_LIMIT_S) -> Derivation:
    """Derive s_f, W_f, the peak of W_f, convexity, the class and its statistics of one objective."""
    from probsft.errors import UserError

    obj = parse(obj)
    if not 0 < tau < 1:
        raise UserError(f"tau must lie in (0, 1), got {tau}")
    s, W = obj.s_expr, obj.W_expr
    klass, reason = paper_class(obj)
    common = dict(spec=obj.spec, label=obj.label, f=sympy.sstr(obj.f_expr), s_f=sympy.sstr(s),
                  W_f=sympy.sstr(W), f_latex=sympy.latex(obj.f_expr), s_latex=sympy.latex(s),
                  W_latex=sympy.latex(W),
                  interval=None if obj.interval is None else str(obj.interval),
                  klass=klass, class_reason=reason, tau=float(tau))
    inputs = obj.token_stats + obj.probe_params
    if inputs:                               # a family of curves: no single peak or statistic
        depends = f"depends on {', '.join(inputs)}"
        return Derivation(**common, peak=math.nan, peak_exact=None, peak_kind=depends,
                          peak_W=math.nan, convexity=depends, convexity_by="-", class_vs_nll=depends,
                          w_mean_p=math.nan, nll_w_mean_p=w_mean_p("nll"), mass_above_tau=math.nan,
                          class_tau=depends, prop32_consistent=None)
    lo, hi = interval_bounds(obj)
    fpp = simplified(sympy.diff(-s / p, p))
    roots, sign = _timed_facts(W, fpp, lo, hi, time_limit)
    at, exact, kind, peak_w = peak(obj, lo, hi, roots)
    convexity, by = (sign, "sympy") if sign and obj.interval is None else (
        _numeric_convexity(obj, lo, hi), "numeric")
    mass = mass_above(obj, tau)
    class_tau = ("neither" if not np.isfinite(mass) or abs(mass - 0.5) < 1e-9
                 else "prior-leaning" if mass > 0.5 else "prior-averse")
    vs_nll, m, m_nll = prior_class(obj)
    consistent = {"convex": at <= 0.5 + 1e-6, "concave": at >= 0.5 - 1e-6,   # numeric peaks: 1e-6
                  "linear": abs(at - 0.5) < 1e-6}.get(convexity)   # both: peak at 1/2
    return Derivation(**common, peak=at, peak_exact=exact, peak_kind=kind, peak_W=peak_w,
                      convexity=convexity, convexity_by=by, class_vs_nll=vs_nll, w_mean_p=m,
                      nll_w_mean_p=m_nll, mass_above_tau=mass, class_tau=class_tau,
                      prop32_consistent=consistent)


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
    """The argmax of W_f as text: a closed form, p→0 / p→1, a number, or what it depends on."""
    if math.isnan(d.peak):
        return d.peak_kind
    if d.peak_kind in ("p->0", "p->1"):
        return d.peak_kind.replace("->", "→")
    return d.peak_exact if d.peak_exact else f"{d.peak:.4g}"


def markdown_table(derivations) -> list[str]:
    """Markdown lines: objective, f, s_f, W_f, peak, convexity, class (the paper's), and the two
    statistics (Def. 3.3 vs NLL; τ-mass)."""
    lines = ["| objective | f(p) | s_f(p) | W_f(p) | argmax W_f | convexity | class | "
             "vs NLL (W-mean p; NLL 1/3) | τ-mass class (τ, mass above) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in derivations:
        cls = (f"{d.klass} | {d.class_vs_nll} ({d.w_mean_p:.3f}) | {d.class_tau} "
               f"({fmt_number(sympy.Rational(repr(d.tau)))}, {d.mass_above_tau:.4f})")
        cond = f" on {d.interval}" if d.interval else ""
        lines.append(f"| `{d.spec}` | `{d.f}`{cond} | `{d.s_f}` | `{d.W_f}` | {peak_text(d)} | "
                     f"{d.convexity} | {cls} |")
    return lines


if __name__ == "__main__":
    from probsft.theory.spec import registered

    print("\n".join(markdown_table(table(sys.argv[1:] or registered()))))
