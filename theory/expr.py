"""Safe parsing of user-written f(p) and compilation of sympy expressions to numpy / torch.

Parsing never calls Python's eval (sympy's ``parse_expr`` does): the text is read by
``ast.parse`` and the syntax tree is walked against a whitelist (numbers, the variable ``p``,
+ - * / ** ^, and a few named functions). Numbers become exact sympy Rationals, so ``0.2`` is 1/5.

Compilation walks the same kind of tree once per call, so one sympy expression serves numpy arrays
and torch tensors alike (``Piecewise`` becomes ``where``). Losses are evaluated as functions of
ell = log p rather than p, after sympy's C99 rewrites (exp(x) - 1 -> expm1(x), log(1 + x) ->
log1p(x)), which keeps (1 - p^alpha)/alpha accurate as alpha -> 0 and -log p finite as p -> 0.

Every symbolic step is bounded. Numbers are read with at most ``MAX_DIGITS`` digits and exponents
are at most ``MAX_EXPONENT`` in size, so no number grows without bound. Steps whose cost grows with
the expression (``simplify``, factoring inside the C99 rewrites, ``solve``) run only on a
:func:`tractable` expression: at most ``MAX_NODES`` tree nodes and polynomial degree at most
``MAX_DEGREE`` (p**10000 would make sympy build a dense polynomial of that degree). ``simplify``
and ``solve`` also run in a forked child with a time limit and a memory cap (:func:`bounded`);
otherwise the unsimplified expression, the factor-free rewrite, or the numeric path answers.
"""

from __future__ import annotations

import ast
import decimal
import functools
import math
import os
import pickle
import re
import select
import signal
import time
from fractions import Fraction

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.codegen.rewriting import FuncMinusOneOptim, ReplaceOptim, optimize, optims_c99

from probsft.errors import SpecError

MAX_DIGITS = 100
"""A number in a spec has at most this many digits (1e308 and 1e-300 are refused)."""
MAX_EXPONENT = 10_000
"""|exponent| of a power, and |alpha| of the alpha family, is at most this."""
MAX_DEPTH = 40
"""A user-written f(p) nests calls, powers and brackets at most this deep."""
MAX_NODES = 120
"""simplify / factor / solve run only on expressions with at most this many tree nodes ..."""
MAX_DEGREE = 64
"""... and at most this polynomial degree (see :func:`degree`)."""
TIME_LIMIT_S = 5.0
"""Seconds a forked symbolic step (:func:`bounded`) may run before its fallback answers."""
MEMORY_LIMIT_BYTES = 1 << 30
"""Address space a forked symbolic step may add to its parent's."""

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


def clip(text, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (and its length said), for messages."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shown(text, limit: int = 60) -> str:
    """``repr(text)`` cut to ``limit`` characters (and its length said), for messages."""
    text = str(text)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


_DECIMAL = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _decimal_digits(text: str) -> int:
    """Digits of the exact numerator plus denominator of a decimal, without building it."""
    if len(text) > 2 * MAX_DIGITS:
        return len(text)
    digits, exponent = decimal.Decimal(text).as_tuple()[1:]
    return len(digits) + abs(exponent)


def number(text: str, name: str | None = None) -> sympy.Rational:
    """Parse a decimal or fraction (``0.2``, ``1/3``, ``1e-3``) into an exact Rational.

    ``name`` (e.g. ``"α"``) names the parameter in the error; NaN, infinities and numbers of more
    than ``MAX_DIGITS`` digits are refused before any big integer is built.
    """
    text = str(text).strip()
    parts = text.split("/")
    if len(parts) > 2 or not all(_DECIMAL.fullmatch(part) for part in parts) \
            or (len(parts) == 2 and not parts[1].isdigit()):
        if name:
            raise SpecError(f"{name} must be a finite number (a decimal or fraction such as 0.5 or "
                            f"1/3), got {shown(text)}")
        raise SpecError(f"{shown(text)} is not a finite number")
    if sum(_decimal_digits(part) for part in parts) > MAX_DIGITS:
        raise SpecError(f"{name or 'a number'} has more than {MAX_DIGITS} digits: {shown(text)}")
    if len(parts) == 2 and int(parts[1]) == 0:
        raise SpecError(f"{name or 'a number'} divides by zero: {shown(text)}")
    return sympy.Rational(parts[0]) / (int(parts[1]) if len(parts) == 2 else 1)


def parse_f(text: str) -> sympy.Expr:
    """Parse a user-written f(p), e.g. ``(1-p**3)/3`` or ``-log(p)``, without eval."""
    source = text.strip().replace("^", "**")
    if not source:
        raise SpecError("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise SpecError(f"cannot read expression {shown(text)}: {err.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise SpecError(f"expression {shown(text)} is nested too deeply or too long") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise SpecError(f"expression {shown(text)} is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        return sympy.sympify(_walk(tree.body))
    except RecursionError:
        raise SpecError(f"expression {shown(text)} is nested too deeply") from None


def _depth(tree) -> int:
    """Nesting depth of a syntax tree, without recursion (a chain a+b+c+... counts as one level)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in ast.iter_child_nodes(node):
            same_chain = isinstance(node, ast.BinOp) and isinstance(child, ast.BinOp) \
                and type(child.op) is type(node.op) and child is node.left
            stack.append((child, depth if same_chain else depth + 1))
    return deepest


def _walk(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return number(repr(node.value))
    if isinstance(node, ast.Name):
        if node.id == "p":
            return p
        if node.id in ("e", "E"):
            return sympy.E
        if node.id == "pi":
            return sympy.pi
        raise SpecError(f"unknown name {shown(node.id)}: an expression may use only the variable p")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _walk(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _walk(node.left), _walk(node.right)
        if type(node.op) in (ast.Pow, ast.BitXor):
            _check_power(left, right)
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            raise SpecError(f"unknown function {shown(node.func.id)}; allowed: {', '.join(sorted(_FUNCTIONS))}")
        return fn(*[_walk(a) for a in node.args])
    raise SpecError(f"unsupported syntax {ast.dump(node)[:60]!r}: use numbers, p, + - * / ** and "
                    f"the functions {', '.join(sorted(_FUNCTIONS))}")


def _check_power(base, exponent) -> None:
    """Refuse a power whose exponent, or whose value as an exact number, would be too large."""
    if not exponent.is_number:
        return
    if not exponent.is_real or abs(float(exponent)) > MAX_EXPONENT:
        raise SpecError(f"exponent too large (|exponent| must be <= {MAX_EXPONENT})")
    if base.is_Rational and base not in (0, 1, -1):
        size = math.log10(abs(int(base.p))) + math.log10(int(base.q))
        if abs(float(exponent)) * size > MAX_DIGITS:
            raise SpecError(f"number too large: a power has more than {MAX_DIGITS} digits")


# ---------------------------------------------------------------------------------------------
# bounds on symbolic work


def _lcm_of_denominators(expr) -> int:
    lcm = 1
    for node in sympy.preorder_traversal(expr):
        if node.is_Pow and node.exp.is_Rational:
            lcm = math.lcm(lcm, int(node.exp.q))
    return lcm


def _units(expr) -> Fraction:
    """Degree of expr in units of its variable: x**(3/2) counts 3/2, a function call its argument."""
    if expr.is_Symbol:
        return Fraction(1)
    if expr.is_number:
        return Fraction(0)
    if expr.is_Add or isinstance(expr, (sympy.Piecewise, sympy.Min, sympy.Max)):
        return max((_units(a) for a in expr.args), default=Fraction(0))
    if expr.is_Mul:
        return sum((_units(a) for a in expr.args), Fraction(0))
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Rational:
            return _units(base) * abs(Fraction(int(exponent.p), int(exponent.q)))
        return _units(base) + _units(exponent) + 1
    return max((_units(a) for a in expr.args), default=Fraction(0)) or Fraction(1)


def degree(expr) -> float:
    """An estimate of the degree of the polynomial sympy builds to factor or solve ``expr``.

    p**a counts |a| times the common denominator of the exponents (p**(1/2) + p**(1/3) is a
    polynomial of degree 3 in p**(1/6)); sums take the maximum, products the sum.
    """
    return float(_units(expr) * _lcm_of_denominators(expr))


def tractable(*exprs) -> bool:
    """True when simplify / factor / solve may be tried on every expression (size and degree)."""
    for expr in exprs:
        nodes = 0
        for _ in sympy.preorder_traversal(expr):
            nodes += 1
            if nodes > MAX_NODES:
                return False
        if degree(expr) > MAX_DEGREE:
            return False
    return True


def _cap_memory() -> None:
    """Cap this (forked) process's address space at its current size + MEMORY_LIMIT_BYTES."""
    try:
        import resource

        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = current + MEMORY_LIMIT_BYTES
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError):
        pass  # no /proc or no RLIMIT_AS: the time limit still bounds the child


def bounded(fn, *args, default=None, limit: float = TIME_LIMIT_S):
    """``fn(*args)`` in a forked child limited to ``limit`` seconds and MEMORY_LIMIT_BYTES more
    memory; ``default`` when it fails, runs over, or the platform cannot fork. The result must
    pickle (sympy expressions do)."""
    if not hasattr(os, "fork"):
        return default
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return default
    if pid == 0:  # the child: compute, send, and leave without running the parent's exit hooks
        status = 1
        try:
            os.close(read_fd)
            _cap_memory()
            data = pickle.dumps(fn(*args))
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
            status = 0
        except BaseException:  # noqa: BLE001 - any failure means: use the default
            pass
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks, done = [], False
    deadline = time.monotonic() + limit
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                done = True
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    if not done or status != 0:
        return default
    try:
        return pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001
        return default


@functools.lru_cache(maxsize=1024)
def simplified(expr: sympy.Expr) -> sympy.Expr:
    """``sympy.simplify(expr)`` when :func:`tractable` and done within TIME_LIMIT_S; else expr."""
    if not tractable(expr):
        return expr
    return bounded(sympy.simplify, expr, default=expr)


# ---------------------------------------------------------------------------------------------
# numeric compilation


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


def is_finite_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
