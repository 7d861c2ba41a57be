"""Safe parsing of user-written f(p) and compilation of sympy expressions to numpy / torch.

Parsing never calls Python's eval (sympy's ``parse_expr`` does): the text is read by
``ast.parse`` and the syntax tree is walked against a whitelist (numbers, the variable ``p``,
+ - * / ** ^, and a few named functions). Numbers become exact sympy Rationals, so ``0.2`` is 1/5.

Compilation walks the same kind of tree once per call, so one sympy expression serves numpy arrays
and torch tensors alike (``Piecewise`` becomes ``where``). Losses are evaluated as functions of
ell = log p rather than p, after sympy's C99 rewrites (exp(x) - 1 -> expm1(x), log(1 + x) ->
log1p(x)), which keeps (1 - p^alpha)/alpha accurate as alpha -> 0 and -log p finite as p -> 0.
"""

from __future__ import annotations

import ast
import functools
import math

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.codegen.rewriting import optimize, optims_c99

from probsft.errors import SpecError

p = sympy.Symbol("p", positive=True)
"""The target-token probability; every f(p) is an expression in this symbol."""
ell = sympy.Symbol("ell", negative=True)
"""ell = log p (p < 1); numeric losses are compiled as functions of ell."""

_FUNCTIONS = {
    "log": sympy.log, "ln": sympy.log, "exp": sympy.exp, "sqrt": sympy.sqrt,
    "log1p": lambda x: sympy.log(1 + x), "expm1": lambda x: sympy.exp(x) - 1,
    "sin": sympy.sin, "cos": sympy.cos, "tanh": sympy.tanh, "atan": sympy.atan,
    "abs": sympy.Abs, "Abs": sympy.Abs, "min": sympy.Min, "max": sympy.Max,
    "Min": sympy.Min, "Max": sympy.Max,
}
_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b, ast.BitXor: lambda a, b: a ** b,
}


def number(text: str) -> sympy.Rational:
    """Parse a decimal or fraction (``0.2``, ``1/3``, ``1e-3``) into an exact Rational."""
    try:
        value = sympy.Rational(text.strip())
    except (TypeError, ValueError, SyntaxError):
        raise SpecError(f"{text!r} is not a number") from None
    return value


def parse_f(text: str) -> sympy.Expr:
    """Parse a user-written f(p), e.g. ``(1-p**3)/3`` or ``-log(p)``, without eval."""
    source = text.strip().replace("^", "**")
    if not source:
        raise SpecError("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise SpecError(f"cannot read expression {text!r}: {err.msg}") from None
    try:
        return sympy.sympify(_walk(tree.body))
    except RecursionError:
        raise SpecError(f"expression {text!r} is nested too deeply") from None


def _walk(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return number(repr(node.value)) if isinstance(node.value, float) else sympy.Integer(node.value)
    if isinstance(node, ast.Name):
        if node.id == "p":
            return p
        if node.id in ("e", "E"):
            return sympy.E
        if node.id == "pi":
            return sympy.pi
        raise SpecError(f"unknown name {node.id!r}: an expression may use only the variable p")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _walk(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _walk(node.left), _walk(node.right)
        if type(node.op) in (ast.Pow, ast.BitXor) and right.is_number and abs(float(right)) > 1e4:
            raise SpecError("exponent too large (|exponent| must be <= 1e4)")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            raise SpecError(f"unknown function {node.func.id!r}; allowed: {', '.join(sorted(_FUNCTIONS))}")
        return fn(*[_walk(a) for a in node.args])
    raise SpecError(f"unsupported syntax {ast.dump(node)[:60]!r}: use numbers, p, + - * / ** and "
                    f"the functions {', '.join(sorted(_FUNCTIONS))}")


# ---------------------------------------------------------------------------------------------
# numeric compilation


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


@functools.lru_cache(maxsize=1024)
def compile_in_logp(expr: sympy.Expr) -> Compiled:
    """Compile an expression in p as a numerically stable function of ell = log p."""
    in_ell = sympy.powsimp(expr.subs(p, sympy.exp(ell)), force=True)
    in_ell = sympy.expand_log(in_ell, force=True)
    try:
        in_ell = optimize(in_ell, optims_c99)
    except Exception:  # noqa: BLE001 - rewriting is an optimisation only
        pass
    return Compiled(in_ell, ell)


def is_finite_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
