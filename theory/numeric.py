"""Compilation of sympy expressions to numpy / torch: one expression serves both backends.

Compilation walks the expression tree once per call (``Piecewise`` becomes ``where``, Min/Max
elementwise minimum/maximum), so the float64 numpy reference and the torch loss evaluate the same
tree. Losses are evaluated as functions of ell = log p rather than p, after sympy's C99 rewrites
(exp(x) - 1 -> expm1(x), log(1 + x) -> log1p(x)), which keeps (1 - p^alpha)/alpha accurate as
alpha -> 0 and -log p finite as p -> 0; log(1 - p) becomes :class:`log1mexp` (accurate as p -> 1).
Symbols other than the variable are an adaptive objective's extra inputs, passed in ``env``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.codegen.rewriting import FuncMinusOneOptim, ReplaceOptim, optimize, optims_c99

from probsft.errors import SpecError
from probsft.theory.bounded import tractable
from probsft.theory.expr import ell, p


class log1mexp(sympy.Function):
    """log(1 - exp(u)) for u <= 0, accurate on both sides (Maechler 2012): log(-expm1(u)) for
    u > -log 2 (p = e^u near 1, where 1 - p cancels), log1p(-exp(u)) below."""

    def fdiff(self, argindex=1):
        u = self.args[0]
        return -sympy.exp(u) / (1 - sympy.exp(u))


def _log1mexp(lib):
    def f(u):
        near_one = u > -math.log(2.0)
        a = lib.log(-lib.expm1(u))
        b = lib.log1p(-lib.exp(u))
        return lib.where(near_one, a, b)
    return f


class _Backend:
    """The handful of array functions the compiled expressions need, for numpy or torch."""

    def __init__(self, lib):
        self.lib = lib
        is_torch = lib.__name__ == "torch"
        self.where = lib.where
        self.logical_and = lib.logical_and
        self.logical_or = lib.logical_or
        self.minimum = lib.minimum if is_torch else np.minimum
        self.maximum = lib.maximum if is_torch else np.maximum
        self.funcs = {
            sympy.exp: lib.exp, sympy.log: lib.log, expm1: lib.expm1, log1p: lib.log1p,
            log1mexp: _log1mexp(lib),
            sympy.sin: lib.sin, sympy.cos: lib.cos, sympy.tanh: lib.tanh,
            sympy.atan: lib.atan if is_torch else np.arctan, sympy.Abs: lib.abs,
        }


@functools.lru_cache(maxsize=4)
def _backend(name: str) -> _Backend:
    if name == "torch":
        import torch

        return _Backend(torch)
    return _Backend(np)


def _eval(expr, x, var, be: _Backend, env=None):
    if expr == var:
        return x
    if expr.is_Symbol:                   # an adaptive objective's extra input (theory.statistics)
        if env is None or expr.name not in env:
            raise SpecError(f"{expr.name} has no value here: this objective needs the extra input "
                            f"{expr.name!r} (see probsft.theory.statistics)")
        return env[expr.name]
    if expr.is_Number or expr.is_NumberSymbol:
        return float(expr)
    if expr.is_Add:
        terms = [_eval(a, x, var, be, env) for a in expr.args]
        return functools.reduce(lambda a, b: a + b, terms)
    if expr.is_Mul:
        terms = [_eval(a, x, var, be, env) for a in expr.args]
        return functools.reduce(lambda a, b: a * b, terms)
    if expr.is_Pow:
        base, exponent = expr.args
        b = _eval(base, x, var, be, env)
        if exponent.is_Number:
            e = float(exponent)
            if e == 0.5:
                return b ** 0.5
            return b ** e if not float(e).is_integer() else b ** int(e)
        return b ** _eval(exponent, x, var, be, env)
    if isinstance(expr, sympy.Piecewise):
        out = None
        for value, cond in reversed(expr.args):
            v = _eval(value, x, var, be, env)
            if cond is sympy.true:
                out = v
                continue
            c = _eval_cond(cond, x, var, be, env)
            out = be.where(c, v, out)
        return out
    if isinstance(expr, (sympy.Min, sympy.Max)):
        op = be.minimum if isinstance(expr, sympy.Min) else be.maximum
        vals = [_as_array(_eval(a, x, var, be, env), x) for a in expr.args]
        return functools.reduce(op, vals)
    fn = be.funcs.get(expr.func)
    if fn is None:
        raise SpecError(f"cannot evaluate {expr.func} numerically")
    return fn(_as_array(_eval(expr.args[0], x, var, be, env), x))


def _as_array(v, like):
    if isinstance(v, float):
        if hasattr(like, "new_full"):
            return like.new_full(like.shape, v)
        return np.full(np.shape(like), v)
    return v


def _eval_cond(cond, x, var, be, env):
    if isinstance(cond, sympy.And):
        return functools.reduce(be.logical_and, [_eval_cond(c, x, var, be, env) for c in cond.args])
    if isinstance(cond, sympy.Or):
        return functools.reduce(be.logical_or, [_eval_cond(c, x, var, be, env) for c in cond.args])
    lhs = _as_array(_eval(cond.lhs, x, var, be, env), x)
    rhs = _eval(cond.rhs, x, var, be, env)
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b}
    return ops[cond.rel_op](lhs, rhs)


class Compiled:
    """A sympy expression in one variable, callable on numpy arrays and torch tensors."""

    def __init__(self, expr: sympy.Expr, var: sympy.Symbol):
        self.expr = expr
        self.var = var

    def __call__(self, x, env=None):
        """Evaluate at ``x``; ``env`` maps the names of any other symbols to values (arrays that
        broadcast against x), e.g. {"sumsq": [N]} for DEFT."""
        be = _backend("torch" if type(x).__module__.startswith("torch") else "numpy")
        if be.lib is np:
            x = np.asarray(x, dtype=float)
            env = None if env is None else {k: np.asarray(v, dtype=float) for k, v in env.items()}
        out = _eval(self.expr, x, self.var, be, env)
        return _as_array(out, x) if isinstance(out, float) else out

    def __repr__(self):
        return f"Compiled({self.expr})"


@functools.lru_cache(maxsize=1024)
def compile_in_p(expr: sympy.Expr) -> Compiled:
    """Compile an expression in p as is (for plots and tables over p in (0, 1))."""
    return Compiled(expr, p)


class _FuncMinusOneAsIs(FuncMinusOneOptim):
    """exp(x) - 1 -> expm1(x) on the expression as written, without sympy's factor() attempt."""

    def __call__(self, expr):
        return ReplaceOptim.__call__(self, expr)


_U = sympy.Wild("u")
_C99_WITHOUT_FACTOR = (
    _FuncMinusOneAsIs(sympy.exp, expm1),
    ReplaceOptim(lambda e: isinstance(e, sympy.log),
                 lambda e: sympy.expand_log(e, force=True).replace(sympy.log(_U + 1), log1p(_U))),
)


@functools.lru_cache(maxsize=1024)
def compile_in_logp(expr: sympy.Expr) -> Compiled:
    """Compile an expression in p as a numerically stable function of ell = log p.

    The C99 rewrites factor their input first; that step runs only on a :func:`tractable`
    expression (the choice depends on the expression alone, so a loss is the same on every run).
    """
    optims = optims_c99 if tractable(expr) else _C99_WITHOUT_FACTOR
    in_ell = sympy.powsimp(expr.subs(p, sympy.exp(ell)), force=True)
    in_ell = sympy.expand_log(in_ell, force=True)
    try:
        in_ell = optimize(in_ell, optims)
        in_ell = in_ell.replace(log1p(-sympy.exp(_U)), log1mexp(_U))   # log(1 - p), p -> 1
    except Exception:  # noqa: BLE001 - rewriting is an optimisation only
        pass
    return Compiled(in_ell, ell)
