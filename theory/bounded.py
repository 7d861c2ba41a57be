"""Bounds on symbolic work: which expressions sympy may simplify / factor / solve, and how long.

Steps whose cost grows with the expression (``simplify``, factoring inside the C99 rewrites,
``solve``) run only on a :func:`tractable` expression: at most ``MAX_NODES`` tree nodes and
polynomial degree at most ``MAX_DEGREE`` (p**10000 would make sympy build a dense polynomial of that
degree). ``simplify`` and ``solve`` also run in a forked child with a time limit and a memory cap
(:func:`bounded`); otherwise the unsimplified expression, the factor-free rewrite, or the numeric
path answers, so a user expression can never hang probsft.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import select
import signal
import time
from fractions import Fraction

import sympy

MAX_NODES = 120
"""simplify / factor / solve run only on expressions with at most this many tree nodes ..."""
MAX_DEGREE = 64
"""... and at most this polynomial degree (see :func:`degree`)."""
TIME_LIMIT_S = 5.0
"""Seconds a forked symbolic step (:func:`bounded`) may run before its fallback answers."""
MEMORY_LIMIT_BYTES = 1 << 30
"""Address space a forked symbolic step may add to its parent's."""


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
