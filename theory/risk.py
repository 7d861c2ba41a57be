"""First-order risk-reduction rate of an objective f(p) per context, and the label-noise crossover.

Paper (Li et al. 2025) Corollary E.6 under Assumption E.3, re-derived in the paper notes §2.4. At
t = 0 the base model's next-token distribution in a context is q (a point of the simplex, [V]),
the true token is y* and the training label is ỹ. One gradient-flow step of f(p_ỹ) on the logits
moves z along  -grad = s_f(q_ỹ)(e_ỹ - q)  (Lemma 3.1), and the population risk R = -q_{y*} changes at

    Ṙ_f(x) = q_{y*} · s_f(q_ỹ) · <e_{y*} - q, e_ỹ - q>          (positive = risk decreases)

with <e_{y*} - q, e_ỹ - q> = δ_{y*ỹ} - q_{y*} - q_ỹ + ||q||². s_f includes a threshold 1{q_ỹ in I}.
With label noise at rate E (ỹ = y* with prob. 1 - E, else a wrong token),

    E_ỹ[Ṙ_f] = (1 - E) · clean + E · E_{ỹ != y*}[noisy],

which is linear in E; for two objectives the difference D(E) = (1 - E)A + E B crosses zero at
E* = A / (A - B). Under a uniform prior q = 1/V (:func:`uniform_prior_threshold`, sympy) this gives
E* = (V - 1)/V: NLL beats any less prior-averse objective unless almost every label is wrong.

Run ``python -m probsft.theory.risk`` to print the uniform-prior derivation and the notes' checks.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import sympy

from probsft.errors import UserError


def _inner(q: np.ndarray, y_star: np.ndarray) -> np.ndarray:
    """<e_{y*} - q, e_j - q> for every token j: [..., V] (q [..., V], y_star [...])."""
    q_star = np.take_along_axis(q, y_star[..., None], -1)                    # [..., 1]
    sq = np.sum(q * q, -1, keepdims=True)                                    # [..., 1]
    out = sq - q_star - q                                                     # [..., V]
    np.put_along_axis(out, y_star[..., None], np.take_along_axis(out, y_star[..., None], -1) + 1.0, -1)
    return out


def _check(q, y_star):
    q = np.asarray(q, dtype=float)
    y_star = np.asarray(y_star, dtype=np.int64)
    if q.ndim < 1 or q.shape[:-1] != y_star.shape:
        raise UserError(f"q must be [..., V] and y_star [...]; got {q.shape} and {y_star.shape}")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise UserError("q must hold finite, non-negative probabilities")
    if np.any(y_star < 0) or np.any(y_star >= q.shape[-1]):
        raise UserError(f"token ids must lie in [0, {q.shape[-1]})")
    return q, y_star


def _context_stats(obj, q):
    """An adaptive objective's token statistics of each context's prior q [..., V]: {name: [..., 1]}
    (DEFT's alpha = sum_j q_j^2 of the base model, the value it takes at t = 0)."""
    from probsft.theory.statistics import token_stats_of_q

    return {k: v[..., None] for k, v in token_stats_of_q(obj.token_stats, q).items()}


def risk_rate(obj, q, y_star, y_label) -> np.ndarray:
    """Ṙ_f = q_{y*} s_f(q_ỹ) <e_{y*} - q, e_ỹ - q> per context (Cor. E.6; notes §2.4).

    Args:
        obj: an Objective (``probsft.objective(spec)``); its threshold is applied through ``obj.s``.
        q: prior probabilities [..., V].
        y_star: true token [...]; y_label: training label ỹ [...].
    Returns:
        [...] rate; positive means the population risk -q_{y*} decreases.
    """
    q, y_star = _check(q, y_star)
    y_label = np.asarray(y_label, dtype=np.int64)
    if y_label.shape != y_star.shape or np.any(y_label < 0) or np.any(y_label >= q.shape[-1]):
        raise UserError("y_label must have y_star's shape and valid token ids")
    inner = np.take_along_axis(_inner(q, y_star), y_label[..., None], -1)[..., 0]
    q_star = np.take_along_axis(q, y_star[..., None], -1)[..., 0]
    q_lab = np.take_along_axis(q, y_label[..., None], -1)[..., 0]
    stats = {k: v[..., 0] for k, v in _context_stats(obj, q).items()}
    return q_star * obj.s(q_lab, stats) * inner


def clean_and_noisy_rates(obj, q, y_star, noisy_label_probs=None) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) rates [...]: Ṙ_f at ỹ = y*, and E_{ỹ != y*}[Ṙ_f] with ỹ uniform over the
    V - 1 other tokens (or weighted by ``noisy_label_probs`` [..., V], renormalised off y*)."""
    q, y_star = _check(q, y_star)
    V = q.shape[-1]
    # Ṙ_f for every candidate label j at once: q_{y*} s_f(q_j) <e_{y*} - q, e_j - q>     [..., V]
    every = np.take_along_axis(q, y_star[..., None], -1) * obj.s(q, _context_stats(obj, q)) \
        * _inner(q, y_star)
    clean = np.take_along_axis(every, y_star[..., None], -1)[..., 0]            # [...]
    if noisy_label_probs is None:
        w = np.ones_like(q)
    else:
        w = np.broadcast_to(np.asarray(noisy_label_probs, dtype=float), q.shape).copy()
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise UserError("noisy_label_probs must be finite and non-negative")
    np.put_along_axis(w, y_star[..., None], 0.0, -1)
    total = w.sum(-1)
    if V < 2 or np.any(total <= 0):
        raise UserError("noisy labels need at least one other token with positive probability")
    noisy = np.sum(w * every, -1) / total
    return clean, noisy


def expected_risk_rate(obj, q, y_star, noise_rate, noisy_label_probs=None) -> np.ndarray:
    """E_ỹ[Ṙ_f] = (1 - E) clean + E · E_{ỹ != y*}[noisy] per context [...] (notes §2.4)."""
    if not 0 <= noise_rate <= 1:
        raise UserError(f"noise_rate must lie in [0, 1], got {noise_rate}")
    clean, noisy = clean_and_noisy_rates(obj, q, y_star, noisy_label_probs)
    return (1 - noise_rate) * clean + noise_rate * noisy


@dataclasses.dataclass(frozen=True)
class Crossing:
    """Where two objectives' context-averaged expected rates cross as the noise rate E grows.

    D(E) = mean_x[Ṙ_a - Ṙ_b] = (1 - E) A + E B.
    ``e_star``: E* = A/(A - B) when D changes sign inside [0, 1]; ``inf`` when no crossing lies in
    [0, 1] and ``winner_below`` wins on all of it; ``nan`` when D = 0 for every E (a tie).
    ``winner_below``/``winner_above``: spec of the faster objective for E < E* / E > E*.
    """

    A: float
    B: float
    e_star: float
    winner_below: str | None
    winner_above: str | None

    def __float__(self) -> float:
        return self.e_star

    def statement(self) -> str:
        if math.isnan(self.e_star):
            return "the two objectives reduce risk equally fast at every noise rate"
        if math.isinf(self.e_star):
            return f"{self.winner_below} reduces risk faster at every noise rate E in [0, 1]"
        return (f"{self.winner_below} reduces risk faster for E < {self.e_star:.6g}, "
                f"{self.winner_above} for E > {self.e_star:.6g}")


def noise_crossing(obj_a, obj_b, q, y_star, noisy_label_probs=None) -> Crossing:
    """The noise-rate crossover of two objectives on contexts q [N..., V], y_star [N...]."""
    ca, na = clean_and_noisy_rates(obj_a, q, y_star, noisy_label_probs)
    cb, nb = clean_and_noisy_rates(obj_b, q, y_star, noisy_label_probs)
    return crossing(float(np.mean(ca - cb)), float(np.mean(na - nb)), obj_a.spec, obj_b.spec)


def crossing(A: float, B: float, name_a: str, name_b: str) -> Crossing:
    """The :class:`Crossing` of D(E) = (1 - E) A + E B, A and B the mean clean and noisy rate
    differences of objective a minus objective b."""
    names = (name_a, name_b)
    if A == 0 and B == 0:
        return Crossing(A, B, math.nan, None, None)
    if A * B < 0 or (A == 0) != (B == 0):
        e_star = A / (A - B)                              # D(E*) = 0, in [0, 1] by the sign test
        below = names[0] if A > 0 or (A == 0 and B < 0) else names[1]
        above = names[1] if below == names[0] else names[0]
        return Crossing(A, B, e_star, below, above)
    winner = names[0] if A + B > 0 else names[1]        # same sign at both ends: no crossing
    return Crossing(A, B, math.inf, winner, winner)


def noise_threshold(obj_a, obj_b, q, y_star, noisy_label_probs=None) -> float:
    """E* (float) of :func:`noise_crossing`: with obj_a the more prior-averse objective (e.g. NLL)
    and obj_b the more prior-leaning one (e.g. -p), obj_b reduces risk faster above E*.
    ``inf``: no crossing in [0, 1] (see ``noise_crossing(...).winner_below`` for who wins);
    ``nan``: identical rates."""
    return noise_crossing(obj_a, obj_b, q, y_star, noisy_label_probs).e_star


# ---------------------------------------------------------------------------------------------
# symbolic: the uniform prior (paper notes §2.4 "MW")


def uniform_prior_threshold() -> dict[str, sympy.Expr]:
    """Derive, from Ṙ_f above, the uniform-prior (q = 1/V) difference of two objectives.

    Returns sympy expressions: ``rate`` (E_ỹ[Ṙ_f] in terms of f'(1/V)), ``difference`` Ṙ_1 - Ṙ_2,
    ``factored`` = (f_2' - f_1')(1/V) / V³ · [(V-1)(1-E) - E], and ``e_star`` = (V-1)/V, the only
    root in E. So with f_2' < f_1' at 1/V (f_2 the more prior-averse, e.g. NLL) objective 2 is
    faster iff E < (V - 1)/V.
    """
    V = sympy.Symbol("V", integer=True, positive=True)
    E = sympy.Symbol("E", nonnegative=True)
    x = sympy.Symbol("x", positive=True)
    f1, f2 = sympy.Function("f_1"), sympy.Function("f_2")
    u = 1 / V                                            # every q_j
    sq = V * u ** 2                                      # ||q||²

    def inner(same: bool):                               # <e_{y*} - q, e_ỹ - q>
        return (1 if same else 0) - u - u + sq

    def rate(f):
        s = -sympy.diff(f(x), x).subs(x, u) * u          # s_f(q_ỹ) = -f'(q_ỹ) q_ỹ, q_ỹ = 1/V
        return (1 - E) * u * s * inner(True) + E * u * s * inner(False)

    diff = sympy.simplify(rate(f1) - rate(f2))
    d1 = sympy.diff(f1(x), x).subs(x, u)
    d2 = sympy.diff(f2(x), x).subs(x, u)
    bracket = (V - 1) * (1 - E) - E
    factored = (d2 - d1) / V ** 3 * bracket
    assert sympy.simplify(diff - factored) == 0, "uniform-prior derivation does not factor"
    e_star = sympy.solve(sympy.Eq(bracket, 0), E)
    return {"rate": sympy.simplify(rate(f1)), "difference": diff, "factored": factored,
            "bracket": bracket, "e_star": sympy.simplify(e_star[0]), "V": V, "E": E}


def main() -> None:
    import probsft

    d = uniform_prior_threshold()
    print("Ṙ_1 - Ṙ_2 =", d["factored"])
    print("E* =", d["e_star"])
    nll, minus_p = probsft.objective("nll"), probsft.objective("p")
    V = 1000
    q = np.full((1, V), 1 / V)
    for E in (0.0, 0.5, 0.99, 0.9995):
        gap = expected_risk_rate(minus_p, q, np.array([0]), E) - expected_risk_rate(nll, q, np.array([0]), E)
        print(f"V={V} uniform, E={E}: Ṙ(-p) - Ṙ(NLL) = {gap[0]:.3e}")
    print(noise_crossing(nll, minus_p, q, np.array([0])).statement())


if __name__ == "__main__":
    main()
