"""Symbolic (sympy) derivations for an objective f(p): s_f, W_f, the peak of W_f, convexity, class.

Paper (Li et al. 2025) Lemma 3.1: s_f(p) = -f'(p) p (or DFT's stop-gradient override) and
W_f(p) = s_f(p)(1 - p), the logit-gradient weight on the target. Proposition 3.2: a concave f has
every maximiser of W_f in [1/2, 1], a convex f in [0, 1/2]. Definition 3.3: f is prior-leaning when
most of the mass of W_f on (0, 1) lies above a threshold tau, prior-averse when most lies below.

``derive(obj)`` returns a frozen :class:`Derivation`. Sympy is asked for a closed-form argmax and the
sign of f'' (f' = -s_f/p, so DFT's effective f is that of 1 - p) in a forked process with a time
limit, so a user expression can never hang; a dense numeric grid answers otherwise. Thresholds
f·1{p in I} restrict the peak search and convexity to I. Run
``python -m probsft.theory.symbolic SPEC...`` to print a table.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys

import numpy as np
import sympy
from probsft.theory.expr import compile_in_p, p
from probsft.theory.objective import Objective, fmt_number
from probsft.theory.spec import parse

TIME_LIMIT_S = 3.0
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
    klass: str                  # prior-leaning / prior-averse / neither (Def. 3.3)
    tau: float
    mass_above_tau: float       # share of the W_f mass on (tau, 1]
    prop32_consistent: bool | None  # Prop. 3.2 holds (None when f is neither convex nor concave)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["class"] = d.pop("klass")
        # strict JSON: inf -> "inf" (an unbounded W_f), nan -> None (undetermined)
        return {k: (v if not isinstance(v, float) or np.isfinite(v) else
                    None if np.isnan(v) else ("inf" if v > 0 else "-inf")) for k, v in d.items()}


# ---------------------------------------------------------------------------------------------
# sympy with a time limit


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


def _worker(conn, args):
    try:
        conn.send(_sympy_facts(*args))
    except Exception:  # noqa: BLE001
        conn.send((None, None))
    conn.close()


def _timed_facts(W, fpp, lo, hi, limit=TIME_LIMIT_S):
    if W.has(sympy.Piecewise) or fpp.has(sympy.Piecewise):
        return None, None
    ctx = multiprocessing.get_context("fork") if sys.platform != "win32" else None
    if ctx is None:
        return None, None
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(child, (W, fpp, lo, hi)), daemon=True)
    proc.start()
    child.close()
    facts = (None, None)
    if parent.poll(limit):
        try:
            facts = parent.recv()
        except EOFError:
            pass
    proc.terminate()
    proc.join(1)
    return facts


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


def _mass_above(obj: Objective, tau: float) -> float:
    """int_tau^1 W / int_0^1 W; +-inf parts (non-integrable W) decide the answer outright."""
    def part(a, b, eps):
        # integrate in u = log(p - a) near a and log(b - p) near b; midpoint by linear grid
        mid = (a + b) / 2
        u = np.logspace(np.log10(eps), np.log10(mid - a), 600)
        left = np.trapezoid(_W_numeric(obj, a + u) * u, np.log(u))
        right = np.trapezoid(_W_numeric(obj, b - u) * u, np.log(u))
        return left, right

    fine = [part(0.0, tau, 1e-14), part(tau, 1.0, 1e-14)]
    # int W diverges at an end iff u·W does not vanish there (W ~ u^k is integrable iff k > -1)
    u = np.array([1e-6, 1e-14])
    with np.errstate(all="ignore"):
        at0, at1 = u * _W_numeric(obj, u), u * _W_numeric(obj, 1 - u)
    diverge_0 = bool(at0[1] > 1e-30 and (not np.isfinite(at0[1]) or at0[1] >= 0.5 * at0[0]))
    diverge_1 = bool(at1[1] > 1e-30 and (not np.isfinite(at1[1]) or at1[1] >= 0.5 * at1[0]))
    if diverge_0 and diverge_1:
        return float("nan")
    if diverge_0:
        return 0.0
    if diverge_1:
        return 1.0
    below, above = sum(fine[0]), sum(fine[1])
    total = below + above
    return float(above / total) if total > 0 else float("nan")


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


def classify(obj: Objective, tau: float = 0.5) -> tuple[float, str]:
    """(share of the W_f mass above tau, Def. 3.3 class), numerically and fast (no sympy)."""
    mass = _mass_above(obj, tau)
    klass = ("neither" if not np.isfinite(mass) or abs(mass - 0.5) < 1e-6
             else "prior-leaning" if mass > 0.5 else "prior-averse")
    return mass, klass


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
    fpp = sympy.simplify(sympy.diff(-s / p, p))
    roots, sign = _timed_facts(W, fpp, lo, hi, time_limit)
    peak, exact, kind, peak_w = _peak(obj, lo, hi, roots)
    convexity, by = (sign, "sympy") if sign and obj.interval is None else (
        _numeric_convexity(obj, lo, hi), "numeric")
    mass, klass = classify(obj, tau)
    consistent = {"convex": peak <= 0.5 + 1e-6, "concave": peak >= 0.5 - 1e-6,   # numeric peaks: 1e-6
                  "linear": abs(peak - 0.5) < 1e-6}.get(convexity)   # both: peak at 1/2
    return Derivation(
        spec=obj.spec, label=obj.label, f=sympy.sstr(obj.f_expr), s_f=sympy.sstr(s),
        W_f=sympy.sstr(W), f_latex=sympy.latex(obj.f_expr), s_latex=sympy.latex(s),
        W_latex=sympy.latex(W), interval=None if obj.interval is None else str(obj.interval),
        peak=peak, peak_exact=exact, peak_kind=kind, peak_W=peak_w, convexity=convexity,
        convexity_by=by, klass=klass, tau=float(tau), mass_above_tau=mass,
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
    if d.peak_kind in ("p->0", "p->1"):
        return d.peak_kind.replace("->", "→")
    return d.peak_exact if d.peak_exact else f"{d.peak:.4g}"


def markdown_table(derivations) -> list[str]:
    """Markdown lines: objective, f, s_f, W_f, peak, convexity, class."""
    lines = ["| objective | f(p) | s_f(p) | W_f(p) | argmax W_f | convexity | class (τ, mass above) |",
             "|---|---|---|---|---|---|---|"]
    for d in derivations:
        cls = f"{d.klass} ({fmt_number(sympy.Rational(repr(d.tau)))}, {d.mass_above_tau:.3f})"
        cond = f" on {d.interval}" if d.interval else ""
        lines.append(f"| `{d.spec}` | `{d.f}`{cond} | `{d.s_f}` | `{d.W_f}` | {peak_text(d)} | "
                     f"{d.convexity} | {cls} |")
    return lines


if __name__ == "__main__":
    from probsft.theory.spec import registered

    print("\n".join(markdown_table(table(sys.argv[1:] or registered()))))
