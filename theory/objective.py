"""The objective: one definition of f(p), from which s_f, W_f and every loss are derived.

Paper (Li et al. 2025, arXiv 2510.00526), Eq. 2: L_f(theta) = E sum_t f(p_theta(y_t | y_<t, x)).
Lemma 3.1: the gradient of f(p_y) on the logits z is  -s_f(p) (e_y - q),  with
    s_f(p) = -f'(p) p  >= 0      (the paper writes the descent direction  s_f (e_y - q))
and the weight on the correct logit is  W_f(p) = s_f(p) (1 - p).
Eq. 4: a hard-thresholded objective is f(p) 1{p in I}; the indicator is evaluated on the current
p and carries no gradient (as in the authors' code), so s and W are multiplied by it too.

An :class:`Objective` is an immutable value: the sympy expression of f (exact constants), an optional
stop-gradient weight (DFT: value -sg(p) log p, weight s = p), and an optional :class:`Interval`.
An *adaptive* objective's f also contains symbols registered in probsft.theory.statistics: per-token
statistics of q (DEFT: alpha = sum_j q_j^2, detached) that every loss path computes from the logits
(``token_stats``), or probe-set parameters fixed before training by ``resolve`` (``alpha(auto)``).
Numeric methods ``f``, ``s``, ``W`` take numpy arrays of p; ``loss`` (torch) and ``loss_numpy`` take
logits and labels (see probsft.theory.losses).
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
from typing import Callable

import numpy as np
import sympy

from probsft.errors import SpecError, UserError
from probsft.theory.bounded import simplified
from probsft.theory.expr import p
from probsft.theory.losses import IGNORE_INDEX, objective_loss, objective_loss_numpy
from probsft.theory.numeric import compile_in_logp
from probsft.theory.statistics import PROBE_PARAMS, token_statistic

__all__ = ["IGNORE_INDEX", "Interval", "Objective", "Quantile", "fmt_number", "label_number"]


@dataclasses.dataclass(frozen=True)
class Quantile:
    """A threshold given as a percentile of base-model target probabilities (the paper's Q_pct)."""

    pct: sympy.Rational

    def __str__(self) -> str:
        return f"Q{fmt_number(self.pct)}"


@dataclasses.dataclass(frozen=True)
class Interval:
    """I subset of [0, 1] for the thresholded objective f(p) 1{p in I} (paper Eq. 4)."""

    lo: object = sympy.Integer(0)          # sympy.Rational or Quantile
    hi: object = sympy.Integer(1)
    lo_closed: bool = True
    hi_closed: bool = True

    def __post_init__(self):
        for b in (self.lo, self.hi):
            if isinstance(b, Quantile):
                if not 0 <= b.pct <= 100:
                    raise SpecError(f"quantile {b} must lie in Q0..Q100")
            elif not 0 <= b <= 1:
                raise SpecError(f"threshold {fmt_number(b)} must lie in [0, 1]")
        if not self.has_quantile and self.lo > self.hi:
            raise SpecError(f"empty interval: {fmt_number(self.lo)} > {fmt_number(self.hi)}")

    @property
    def has_quantile(self) -> bool:
        return isinstance(self.lo, Quantile) or isinstance(self.hi, Quantile)

    def resolve(self, base_probs) -> "Interval":
        """Replace quantile bounds by percentiles of the supplied base-model target probabilities."""
        probs = np.asarray(base_probs, dtype=float).ravel()
        if probs.size == 0 or not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
            raise SpecError("quantile thresholds need a non-empty array of probabilities in [0, 1]")

        def value(b):
            if isinstance(b, Quantile):
                return sympy.Rational(repr(float(np.percentile(probs, float(b.pct)))))
            return b

        return Interval(value(self.lo), value(self.hi), self.lo_closed, self.hi_closed)

    def indicator(self, x):
        """1{x in I} as a boolean array/tensor (x is p, or log p when ``in_logp``)."""
        if self.has_quantile:
            raise SpecError(f"objective has unresolved quantile threshold(s) {self}: call "
                            ".with_quantiles(base_probs) first (`probsft finetune` resolves "
                            "them on the base model by itself)")
        lo, hi = float(self.lo), float(self.hi)
        above = (x >= lo) if self.lo_closed else (x > lo)
        below = (x <= hi) if self.hi_closed else (x < hi)
        return above & below

    def sympy_condition(self):
        lo, hi = self.lo, self.hi
        c_lo = (p >= lo) if self.lo_closed else (p > lo)
        c_hi = (p <= hi) if self.hi_closed else (p < hi)
        return sympy.And(c_lo, c_hi)

    def __str__(self) -> str:
        lo_op = "<=" if self.lo_closed else "<"
        hi_op = "<=" if self.hi_closed else "<"
        lo_trivial = not isinstance(self.lo, Quantile) and self.lo == 0 and self.lo_closed
        hi_trivial = not isinstance(self.hi, Quantile) and self.hi == 1 and self.hi_closed
        lo_s, hi_s = _bound_str(self.lo), _bound_str(self.hi)
        if hi_trivial and not lo_trivial:
            return f"p{'>=' if self.lo_closed else '>'}{lo_s}"
        if lo_trivial and not hi_trivial:
            return f"p{hi_op}{hi_s}"
        return f"{lo_s}{lo_op}p{hi_op}{hi_s}"

    def pretty(self) -> str:
        return str(self).replace(">=", "≥").replace("<=", "≤")


def _bound_str(b) -> str:
    return str(b) if isinstance(b, Quantile) else fmt_number(b)


def fmt_number(x) -> str:
    """Exact, round-trippable text for a Rational: 0.2, 10, 1/3 (decimal when it terminates)."""
    x = sympy.Rational(x)
    if x.is_Integer:
        return str(int(x))
    q = int(x.q)
    for prime in (2, 5):
        while q % prime == 0:
            q //= prime
    if q != 1:
        return f"{x.p}/{x.q}"
    with decimal.localcontext() as ctx:
        ctx.prec = 200
        return format((decimal.Decimal(int(x.p)) / decimal.Decimal(int(x.q))).normalize(), "f")


def label_number(x) -> str:
    """:func:`fmt_number` bracketed where a label needs it: 0.5, (1/3), (-2)."""
    text = fmt_number(x)
    return f"({text})" if "/" in text or text.startswith("-") else text


_THRESHOLD_MARK = "·1{"      # label of f·1{p in I}: "<label of f>·1{<interval>}"


@dataclasses.dataclass(frozen=True)
class Objective:
    """One probability-based objective f(p), possibly thresholded.

    Attributes:
        spec: canonical spec text; ``probsft.objective(obj.spec) == obj``.
        label: short display name as in the paper, e.g. ``−p^10`` or ``−log p·1{p≥0.2}``.
        f_expr: f(p) in the symbol ``probsft.theory.expr.p`` (the loss *value*).
        s_override: weight used for the gradient instead of -f'(p) p (DFT's stop-gradient);
            ``None`` for every ordinary objective.
        interval: threshold interval I of Eq. 4, or ``None``.
        family: registry family name (``nll``, ``alpha``, ``dft``, ``expr`` ...).
        anchor: weight lambda of a KL anchor to the base (reference) model, added per counted
            token as lambda·KL(r || q) with r = softmax(ref_logits) (ASFT); ``None`` for every
            objective that depends on the model's logits only. Not part of f, s_f or W_f: its logit
            gradient lambda (q - r) does not depend on p (probsft.theory.losses).
        probe_build: for an objective with probe-set parameters (``alpha(auto)``), the registry's
            builder of the fixed objective from their values {name: float}; ``resolve`` calls it.
            Not part of equality: it is a function of the spec.
    """

    spec: str
    label: str
    f_expr: sympy.Expr
    s_override: sympy.Expr | None = None
    interval: Interval | None = None
    family: str = "expr"
    anchor: sympy.Rational | None = None
    probe_build: Callable[[dict], "Objective"] | None = dataclasses.field(
        default=None, compare=False, repr=False)

    # ----- symbolic ------------------------------------------------------------------------
    @property
    def s_expr(self) -> sympy.Expr:
        """s_f(p) = -f'(p) p of the *unthresholded* objective (Lemma 3.1), simplified when sympy
        can do so within its bounds (probsft.theory.bounded.simplified)."""
        if self.s_override is not None:
            return self.s_override
        return simplified(-sympy.diff(self.f_expr, p) * p)

    @property
    def W_expr(self) -> sympy.Expr:
        """W_f(p) = s_f(p) (1 - p) of the unthresholded objective (Lemma 3.1)."""
        return simplified(self.s_expr * (1 - p))

    def thresholded(self, interval: Interval) -> "Objective":
        """f(p)·1{p in I} (Eq. 4) of this unthresholded objective; spec ``BASE@I``."""
        if self.interval is not None:
            raise SpecError(f"{self.spec} already carries a threshold")
        return dataclasses.replace(self, spec=f"{self.spec}@{interval}",
                                   label=f"{self.label}{_THRESHOLD_MARK}{interval.pretty()}}}",
                                   interval=interval)

    @property
    def base(self) -> "Objective":
        """The same objective without its threshold (the inverse of :meth:`thresholded`)."""
        if self.interval is None:
            return self
        return dataclasses.replace(self, spec=self.spec.split("@", 1)[0],
                                   label=self.label.rsplit(_THRESHOLD_MARK, 1)[0], interval=None)

    def with_quantiles(self, base_probs) -> "Objective":
        """Resolve Q_pct thresholds against base-model target probabilities (paper §5 ablation)."""
        if self.interval is None or not self.interval.has_quantile:
            return self
        return self.base.thresholded(self.interval.resolve(base_probs))

    # ----- extra inputs of adaptive objectives (probsft.theory.statistics) --------------------
    @property
    def token_stats(self) -> tuple[str, ...]:
        """Names of the per-token statistics of q that f needs (e.g. ("sumsq",) for DEFT)."""
        return _extra_symbols(self, "token")

    @property
    def probe_params(self) -> tuple[str, ...]:
        """Names of the parameters ``resolve`` must fix from the probe (e.g. alpha(auto))."""
        return _extra_symbols(self, "probe")

    @property
    def needs_reference(self) -> bool:
        """Whether the loss needs the base model's logits (``loss(..., ref_logits=...)``)."""
        return self.anchor is not None

    @property
    def needs_probe(self) -> bool:
        """Whether ``resolve(base_probs)`` must run before training (probe parameters, Q<pct>)."""
        return bool(self.probe_params) or (self.interval is not None and self.interval.has_quantile)

    def resolve(self, base_probs) -> "Objective":
        """Fix probe-set parameters and Q_pct thresholds from base-model target probabilities [N].

        ``alpha(auto)@p>=Q90`` becomes e.g. ``alpha(0.587)@p>=0.0312``; objectives without either
        are returned unchanged. Resolution happens once, before training."""
        if not self.needs_probe:
            return self
        obj = self
        if self.probe_params:
            values = {name: PROBE_PARAMS[name].rule(base_probs) for name in self.probe_params}
            obj = self.base.probe_build(values)          # the registry's fixed member, unthresholded
            if self.interval is not None:
                obj = obj.thresholded(self.interval)
        return obj.with_quantiles(base_probs)

    def _require(self, stats, without_anchor=False):
        if self.anchor is not None and not without_anchor:
            raise UserError(f"objective {self.spec} adds a KL anchor to the base model, which is not "
                            "a function of p: train it with obj.loss(logits, labels, ref_logits=...)")
        if any(stats is None or n not in stats for n in self.probe_params):
            raise SpecError(f"objective {self.spec} has a parameter set from the base model's "
                            "probe: call .resolve(base_probs) first (the runner and `probsft "
                            "recommend` do this)")
        missing = [n for n in self.token_stats if stats is None or n not in stats]
        if missing:
            raise SpecError(f"objective {self.spec} depends on the model's whole next-token "
                            f"distribution through {', '.join(missing)}, not on p alone: pass "
                            "stats={name: values} (the loss paths compute them from the logits)")

    # ----- numeric, in p (numpy) ------------------------------------------------------------
    def _mask(self, x):
        return 1.0 if self.interval is None else self.interval.indicator(x)

    def f(self, prob, stats=None):
        """f(p) 1{p in I}, elementwise on a numpy array of probabilities (``stats``: the token
        statistics of an adaptive objective, arrays broadcasting against ``prob``). For an anchored
        objective f, s and W are those of its p-part (ASFT: DFT's); the anchor's gradient
        lambda (q - r) vanishes where the model equals the base model."""
        prob = np.asarray(prob, dtype=float)
        return np.where(self._mask(prob), self.f_of_logp(np.log(prob), stats, True), 0.0)

    def s(self, prob, stats=None):
        """s_f(p) 1{p in I} >= 0 (Lemma 3.1), elementwise."""
        prob = np.asarray(prob, dtype=float)
        return np.where(self._mask(prob), self.s_of_logp(np.log(prob), stats, True), 0.0)

    def W(self, prob, stats=None):
        """W_f(p) = s_f(p)(1 - p) 1{p in I}: the logit-gradient weight on the target (Lemma 3.1)."""
        prob = np.asarray(prob, dtype=float)
        return self.s(prob, stats) * (1.0 - prob)

    # ----- numeric losses ---------------------------------------------------------------------
    def loss(self, logits, labels, ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
             num_items_in_batch=None, ref_logits=None):
        """Torch loss from logits [..., V] and aligned labels [...]; see probsft.theory.losses.
        ``ref_logits`` [..., V]: the base model's logits on the same batch, required exactly when
        ``needs_reference`` (ASFT's KL anchor)."""
        return objective_loss(self, logits, labels, ignore_index=ignore_index, reduction=reduction,
                              num_items_in_batch=num_items_in_batch, ref_logits=ref_logits)

    def loss_numpy(self, logits, labels, ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                   num_items_in_batch=None, ref_logits=None):
        """The same loss on numpy arrays (float64 reference)."""
        return objective_loss_numpy(self, logits, labels, ignore_index=ignore_index,
                                    reduction=reduction, num_items_in_batch=num_items_in_batch,
                                    ref_logits=ref_logits)

    def f_of_logp(self, logp, stats=None, without_anchor: bool = False):
        """Unthresholded f as a function of log p (numpy or torch), numerically stable;
        ``stats``: {name: values} of the objective's ``token_stats`` (detached). An anchored
        objective's KL term is not a function of p: a caller that trains on f alone would drop it,
        so it must say ``without_anchor=True`` (it adds the anchor itself, or wants f's p-part)."""
        self._require(stats, without_anchor)
        return _f_logp(self)(logp, stats)

    def s_of_logp(self, logp, stats=None, without_anchor: bool = False):
        """Unthresholded s_f as a function of log p (numpy or torch), numerically stable."""
        self._require(stats, without_anchor)
        return _s_logp(self)(logp, stats)

    def __str__(self) -> str:
        return self.spec


@functools.lru_cache(maxsize=512)
def _f_logp(obj: Objective):
    return compile_in_logp(obj.f_expr)


@functools.lru_cache(maxsize=512)
def _s_logp(obj: Objective):
    return compile_in_logp(obj.s_expr)


@functools.lru_cache(maxsize=512)
def _extra_symbols(obj: Objective, kind: str) -> tuple[str, ...]:
    """Registered names of kind "token" or "probe" among the symbols of f and s_f."""
    s_symbols = set() if obj.s_override is None else obj.s_override.free_symbols  # s_f's are f's
    names = {sym.name for sym in (obj.f_expr.free_symbols | s_symbols)}
    if kind == "token":
        return tuple(n for n in sorted(names) if token_statistic(n) is not None)
    return tuple(n for n in PROBE_PARAMS if n in names)
