"""Safe parsing of a user-written f(p) into an exact sympy expression, and the symbols p and ell.

Parsing never calls Python's eval (sympy's ``parse_expr`` does): the text is read by
``ast.parse`` and the syntax tree is walked against a whitelist (numbers, the variable ``p``,
+ - * / ** ^, and a few named functions). Numbers become exact sympy Rationals, so ``0.2`` is 1/5.
Numbers are read with at most ``MAX_DIGITS`` digits, exponents are at most ``MAX_EXPONENT`` in size
and expressions nest at most ``MAX_DEPTH`` deep, so no number or tree grows without bound.

The symbolic work done on a parsed expression is bounded in probsft.theory.bounded; its numeric
evaluation (numpy and torch, as a function of ell = log p) lives in probsft.theory.numeric.
"""

from __future__ import annotations

import ast
import decimal
import math
import re

import sympy

from probsft.errors import SpecError

MAX_DIGITS = 100
"""A number in a spec has at most this many digits (1e308 and 1e-300 are refused)."""
MAX_EXPONENT = 10_000
"""|exponent| of a power, and |alpha| of the alpha family, is at most this."""
MAX_DEPTH = 40
"""A user-written f(p) nests calls, powers and brackets at most this deep."""

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
