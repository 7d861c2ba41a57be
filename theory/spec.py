"""The objective registry and its spec grammar: text -> :class:`Objective`.

One registry (``FAMILIES``) maps each family name to one definition of f(p); every other part of
probsft (plots, simulator, fine-tunes, CLI) reaches objectives only through :func:`parse`, so a new
objective is one ``Family`` entry.

Grammar (spaces are ignored; ``≥``/``≤`` may replace ``>=``/``<=``)::

    spec      := base [ "@" condition ]
    base      := nll | p | alpha(A) | alpha(auto) | dft | deft | focal(G) | huber(D) | log(1-p)
               | eaft[(A[,K[,C]])] | chord | asft[(L)]        (the SFT ecosystem's objectives)
               | expr:F | F
               | an alias: -log p, logp, original, ce, -p, 1-p, -p^A, GeneralFamily-A
    condition := p>=X | p>X | p<=X | p<X | X<=p<=Y (any of < <=) | [X,Y] | (X,Y] | [X,Y) | (X,Y)
    X, Y      := a number in [0, 1] (0.2, 1/3)  |  Q<pct>: the pct-th percentile of base-model
                 target probabilities (Q90), resolved later with Objective.with_quantiles(...)
    F         := an expression in p: numbers, p, + - * / ** ^, log exp sqrt log1p expm1 ...

A family's trailing parameters may be left out where it has defaults: ``eaft(2)`` is
``eaft(2,20,3)``.

The SFT ecosystem's own objectives (EAFT, CHORD-φ, ASFT) and how ProFit-style masking maps
onto a threshold: probsft.theory.ecosystem.

The authors' keys are accepted as written: ``original``, ``logp``, ``p``, ``GeneralFamily-8``,
``OnlyTopP-0.2`` (= ``p@p>=0.2``), ``OnlyBottomP-q``, ``OnlyTopLogP-q`` (= ``nll@p>=q``),
``OnlyBottomLogP-q``. ``str(objective)`` gives the canonical spec and ``parse`` round-trips it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable

import numpy as np
import sympy

from probsft.errors import SpecError
from probsft.theory.expr import MAX_EXPONENT, clip, number, p, parse_f, shown
from probsft.theory.numeric import compile_in_p
from probsft.theory.ecosystem import asft, chord, eaft
from probsft.theory.objective import Interval, Objective, Quantile, fmt_number, label_number
from probsft.theory.statistics import PROBE_PARAMS, TOKEN_STATS

GRAMMAR = """valid objective specs:
  nll | -log p | logp | original      negative log-likelihood  f = -log p
  p | -p | 1-p                        f = 1 - p
  alpha(A) | -p^A | GeneralFamily-A   f = (1 - p^A)/A  (any real A; A=0 is nll, A=1 is p)
  alpha(auto)                         alpha fixed before training from the base model's mean p
                                      on the data: alpha = p/(1-p), in [0, 10] (peak of W_f there)
  dft                                 f = -sg(p) log p  (same gradient as 1-p)
  deft                                f = (1 - p^a)/a with a = sum_j q_j^2 per token (detached)
  focal(G)                            f = -(1-p)^G log p, G >= 0
  huber(D)                            Huber on e = 1-p with threshold D in (0, 1]
  log(1-p)                            f = log(1 - p)
  eaft | eaft(A,K,C)                  EAFT: f = -(H_K/C)^A log p, H_K the top-K entropy (detached);
                                      eaft = eaft(1,20,3) (LLaMA-Factory), eaft(1,20,1) (axolotl)
  chord                               CHORD-phi: f = -sg(p(1-p)) log p
  asft | asft(L)                      ASFT: dft + L·KL(base || model), needs ref_logits; asft(0.1)
  expr:F  or just F                   your own f(p), e.g. (1-p**3)/3 (non-increasing on (0,1))
  SPEC@COND                           threshold f(p)·1{p in I}: COND is p>=X, p<X, X<=p<=Y, [X,Y] ...
                                      X may be Q<pct>, a base-model percentile (Q90)
  authors' keys                       OnlyTopP-q, OnlyBottomP-q, OnlyTopLogP-q, OnlyBottomLogP-q"""


@dataclasses.dataclass(frozen=True)
class Family:
    """One registry entry: how a named family builds f(p) from its parameters."""

    name: str
    params: tuple[str, ...]        # parameter names as the paper writes them (α, γ, δ)
    build: Callable[..., Objective]
    doc: str
    defaults: tuple = ()
    auto: Callable[[], Objective] | None = None   # NAME(auto): parameters set by the probe


def _nll() -> Objective:
    return Objective("nll", "−log p", -sympy.log(p), family="nll")


def _plain_p() -> Objective:
    return Objective("p", "−p", 1 - p, family="p")


def _alpha(a) -> Objective:
    if abs(a) > MAX_EXPONENT:
        raise SpecError(f"α must lie in [-{MAX_EXPONENT}, {MAX_EXPONENT}], got {clip(fmt_number(a), 20)}")
    if a == 0:
        return _nll()  # lim_{a->0} (1 - p^a)/a = -log p
    if a == 1:
        return _plain_p()
    return Objective(f"alpha({fmt_number(a)})", f"−p^{label_number(a)}", (1 - p ** a) / a,
                     family="alpha")


def _dft() -> Objective:
    # Value -sg(p) log p; the stop-gradient makes the logit weight s = p, as for 1 - p.
    return Objective("dft", "DFT −sg(p)·log p", -p * sympy.log(p), s_override=p, family="dft")


def _alpha_auto() -> Objective:
    # alpha is a probe parameter: Objective.resolve(base_probs) builds alpha(value) through
    # _alpha_probed (a module-level function, so the objective still pickles)
    a = PROBE_PARAMS["alpha_probe"].symbol
    return Objective("alpha(auto)", "−p^α̂ (α from the probe)", (1 - p ** a) / a, family="alpha",
                     probe_build=_alpha_probed)


def _alpha_probed(values: dict) -> Objective:
    return _alpha(sympy.Rational(repr(values["alpha_probe"])))


def _deft() -> Objective:
    # DEFT (arXiv 2602.11424): the alpha family with a per-token alpha = sum_j q_j^2 of the current
    # softmax, detached, so s_f = -f'(p) p = p^alpha and the logit gradient is p^alpha (q - e_y)
    a = TOKEN_STATS["sumsq"].symbol
    return Objective("deft", "DEFT (1−p^α)/α, α=Σq²", (1 - p ** a) / a, family="deft")


def _focal(gamma) -> Objective:
    if not 0 <= gamma <= MAX_EXPONENT:
        raise SpecError(f"focal: γ must lie in [0, {MAX_EXPONENT}], got {clip(fmt_number(gamma), 20)}")
    return Objective(f"focal({fmt_number(gamma)})", f"focal γ={label_number(gamma)}",
                     -(1 - p) ** gamma * sympy.log(p), family="focal")


def _huber(delta) -> Objective:
    if not 0 < delta <= 1:
        raise SpecError(f"huber: δ must lie in (0, 1], got {clip(fmt_number(delta), 20)}")
    e = 1 - p
    f = sympy.Piecewise((e ** 2 / 2, e <= delta), (delta * (e - delta / 2), True))
    return Objective(f"huber({fmt_number(delta)})", f"Huber δ={label_number(delta)}", f,
                     family="huber")


def _log1mp() -> Objective:
    return Objective("log(1-p)", "log(1−p)", sympy.log(1 - p), family="log1mp")


FAMILIES: dict[str, Family] = {
    fam.name: fam for fam in [
        Family("nll", (), _nll, "negative log-likelihood, f = -log p (standard SFT)"),
        Family("p", (), _plain_p, "f = 1 - p ('-p'): maximises expected per-token accuracy"),
        Family("alpha", ("α",), _alpha, "f = (1 - p^A)/A (Eq. 3); convex A<=1, concave A>=1",
               auto=_alpha_auto),
        Family("dft", (), _dft, "DFT, f = -sg(p) log p; same logit gradient as 1 - p"),
        Family("deft", (), _deft, "DEFT, (1 - p^a)/a with a = sum_j q_j^2 per token, detached"),
        Family("focal", ("γ",), _focal, "focal loss -(1-p)^G log p (App. F.2)", (2,)),
        Family("huber", ("δ",), _huber, "Huber loss on e = 1 - p with threshold D (App. F.2)"),
        Family("log(1-p)", (), _log1mp, "f = log(1 - p): extremely prior-leaning"),
        Family("eaft", ("A", "K", "C"), eaft, "EAFT, NLL weighted by (top-K entropy / C)^A, "
               "detached (LLaMA-Factory: eaft(1,20,3); axolotl: eaft(1,20,1))", (1, 20, 3)),
        Family("chord", (), chord, "CHORD-φ, f = -sg(p(1-p)) log p; W_f = p(1-p)^2"),
        Family("asft", ("λ",), asft, "ASFT, DFT + λ·KL(base || model); needs the base model's "
               "logits (ref_logits)", (sympy.Rational(1, 10),)),
    ]
}

ALIASES: dict[str, str] = {
    "-logp": "nll", "logp": "nll", "-log(p)": "nll", "original": "nll", "ce": "nll",
    "-p": "p", "1-p": "p", "plain": "p", "log1mp": "log(1-p)", "log1p(-p)": "log(1-p)",
}

AUTHOR_THRESHOLD_KEYS: dict[str, tuple[str, str]] = {
    # key -> (base spec, comparison); the authors' mask is p >= q or p <= q on the current p
    "onlytopp": ("p", ">="), "onlybottomp": ("p", "<="),
    "onlytoplogp": ("nll", ">="), "onlybottomlogp": ("nll", "<="),
}

MAX_SPEC_CHARS = 1000
"""A longer spec is refused before it is parsed."""

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?:/\d+)?"
_CALL = re.compile(r"^([a-z]+)\(([^()]*)\)$")       # a family's arguments are checked by number()
_AUTO_CALL = re.compile(r"^([a-z]+)\(auto\)$")
_POWER = re.compile(rf"^-p(?:\^|\*\*)\(?({_NUM})\)?$")
_ALPHA_EQ = re.compile(r"^alpha[=:](.+)$")
_AUTHOR = re.compile(r"^(generalfamily|onlytopp|onlybottomp|onlytoplogp|onlybottomlogp)-(.+)$")


def parse(spec) -> Objective:
    """Parse a spec (see module docstring) into an Objective; pass Objectives through."""
    if isinstance(spec, Objective):
        return spec
    if not isinstance(spec, str):
        raise SpecError(f"an objective spec must be a string, got {type(spec).__name__}\n{GRAMMAR}")
    try:
        if len(spec) > MAX_SPEC_CHARS:
            raise SpecError(f"too long ({len(spec)} characters; at most {MAX_SPEC_CHARS})")
        try:
            return _parse_cached(spec)
        except RecursionError:
            raise SpecError("nested too deeply") from None
    except SpecError as err:
        raise SpecError(f"bad objective spec {shown(spec)}: {err}\n{GRAMMAR}") from None


@functools.lru_cache(maxsize=1024)
def _parse_cached(spec: str) -> Objective:
    text = "".join(spec.split()).replace("≥", ">=").replace("≤", "<=").replace("−", "-")
    if not text:
        raise SpecError("empty spec")
    base_text, _, cond_text = text.partition("@")
    if "@" in cond_text:
        raise SpecError("at most one '@' threshold")
    author = _AUTHOR.match(base_text.lower())
    if author and author.group(1) != "generalfamily":
        if cond_text:
            raise SpecError(f"{shown(base_text)} already carries a threshold")
        base_spec, op = AUTHOR_THRESHOLD_KEYS[author.group(1)]
        base_text, cond_text = base_spec, f"p{op}{fmt_number(number(author.group(2), 'q'))}"
    base = _parse_base(base_text)
    if not cond_text:
        return base
    return base.thresholded(parse_condition(cond_text))


def _parse_base(text: str) -> Objective:
    low = text.lower()
    if text.startswith("expr:"):
        return expression_objective(text[len("expr:"):])
    name = ALIASES.get(low, low)
    if name in FAMILIES and len(FAMILIES[name].defaults) == len(FAMILIES[name].params):
        return FAMILIES[name].build(*FAMILIES[name].defaults)     # no parameters, or all defaults
    m = _POWER.match(low) or _ALPHA_EQ.match(low)
    if m:
        return _alpha(number(m.group(1), "α"))
    m = _AUTHOR.match(low)
    if m:  # GeneralFamily-a (the other author keys were handled with their threshold)
        return _alpha(number(m.group(2), "α"))
    m = _AUTO_CALL.match(low)
    if m and m.group(1) in FAMILIES:
        if FAMILIES[m.group(1)].auto is None:
            raise SpecError(f"{m.group(1)} has no probe-set (auto) parameter")
        return FAMILIES[m.group(1)].auto()
    m = _CALL.match(low)
    if m and m.group(1) in FAMILIES:
        fam = FAMILIES[m.group(1)]
        texts = m.group(2).split(",") if m.group(2) else []
        if len(texts) > len(fam.params):
            raise SpecError(f"{fam.name} takes {len(fam.params)} parameter(s) "
                            f"({', '.join(fam.params) or 'none'}), got {len(texts)}")
        args = [number(t, n) for t, n in zip(texts, fam.params)]
        if len(fam.defaults) == len(fam.params):          # trailing parameters may be left out
            args += list(fam.defaults[len(args):])
        if len(args) != len(fam.params):
            raise SpecError(f"{fam.name} takes {len(fam.params)} parameter(s) "
                            f"({', '.join(fam.params) or 'none'}), got {len(args)}")
        return fam.build(*args)
    if low in FAMILIES:  # a parametric family named without its parameters and no default
        raise SpecError(f"{low} needs parameter(s) {', '.join(FAMILIES[low].params)}, e.g. {low}(0.5)")
    return expression_objective(text)


_COND_ONE = re.compile(r"^p(>=|>|<=|<)(.+)$")
_COND_ONE_REV = re.compile(r"^(.+?)(<=|<)p$")
_COND_TWO = re.compile(r"^(.+?)(<=|<)p(<=|<)(.+)$")
_COND_BRACKET = re.compile(r"^([\[(])(.+),(.+)([\])])$")


def _bound(text: str):
    if text[:1] in "qQ":
        return Quantile(number(text[1:], "a quantile"))
    return number(text, "a threshold")


def parse_condition(text: str) -> Interval:
    """Parse the part after '@' into an Interval."""
    text = text.replace("1{", "").rstrip("}") if text.startswith("1{") else text
    m = _COND_TWO.match(text)
    if m:
        return Interval(_bound(m.group(1)), _bound(m.group(4)), m.group(2) == "<=", m.group(3) == "<=")
    m = _COND_ONE.match(text)
    if m:
        op, b = m.group(1), _bound(m.group(2))
        if op.startswith(">"):
            return Interval(lo=b, lo_closed=(op == ">="))
        return Interval(hi=b, hi_closed=(op == "<="))
    m = _COND_ONE_REV.match(text)
    if m:
        return Interval(lo=_bound(m.group(1)), lo_closed=(m.group(2) == "<="))
    m = _COND_BRACKET.match(text)
    if m:
        return Interval(_bound(m.group(2)), _bound(m.group(3)), m.group(1) == "[", m.group(4) == "]")
    raise SpecError(f"cannot read threshold condition {shown(text)}")


# A dense grid, denser near both ends, on which user-written f(p) must be finite and non-increasing.
_CHECK_GRID = np.unique(np.concatenate([
    np.logspace(-8, np.log10(0.5), 400), 1 - np.logspace(-8, np.log10(0.5), 400)]))


def expression_objective(text: str) -> Objective:
    """A user-written f(p), parsed safely and validated on (0, 1)."""
    f = parse_f(text)
    if f.free_symbols - {p}:
        raise SpecError("an expression may use only the variable p")
    if p not in f.free_symbols:
        raise SpecError("f(p) is constant: it gives no gradient")
    f_text = clip(sympy.sstr(f))
    fprime = sympy.diff(f, p)
    with np.errstate(all="ignore"):
        vals = compile_in_p(f)(_CHECK_GRID)
        slope = compile_in_p(fprime)(_CHECK_GRID)
    if np.iscomplexobj(vals) or not np.all(np.isfinite(vals)):
        raise SpecError(f"f(p) = {f_text} is not finite and real on all of (0, 1)")
    if np.iscomplexobj(slope) or not np.all(np.isfinite(slope)):
        raise SpecError(f"f(p) = {f_text} is not differentiable on all of (0, 1)")
    scale = max(1.0, float(np.max(np.abs(slope))))
    if np.any(slope > 1e-9 * scale):
        bad = float(_CHECK_GRID[np.argmax(slope)])
        raise SpecError(f"f(p) = {f_text} must be non-increasing on (0, 1); f'({bad:.3g}) > 0")
    return Objective(f"expr:{sympy.sstr(f)}", f"f={sympy.sstr(f)}", f, family="expr")


def registered() -> list[str]:
    """Canonical specs of the paper's named objectives, for listings and default sweeps."""
    return ["nll", "p", "alpha(0.1)", "alpha(0.5)", "alpha(0.8)", "alpha(5)", "alpha(10)",
            "log(1-p)", "dft", "focal(2)", "huber(0.5)", "nll@p>=0.2", "p@p>=0.2"]


def ecosystem() -> list[str]:
    """Canonical specs of the SFT ecosystem's own objectives (module docstring): EAFT as
    LLaMA-Factory and axolotl ship it, CHORD-φ, ASFT (needs the base model's logits)."""
    return ["eaft(1,20,3)", "eaft(1,20,1)", "chord", "asft(0.1)"]


def adaptive() -> list[str]:
    """Canonical specs of the objectives that adapt to the model: per token (deft) or once, from
    the probe (alpha(auto), resolved with Objective.resolve before training)."""
    return ["deft", "alpha(auto)"]
