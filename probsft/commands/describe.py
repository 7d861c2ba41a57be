"""`probsft describe SPEC [--json] [--tau T] [--vocab V]`: the symbolic derivation of one objective.

Prints f, s_f = -f'p, W_f = s_f(1 - p) (Lemma 3.1), the argmax of W_f, the convexity of f, the
class as the paper assigns it (prior-averse / prior-leaning / adaptive, with its reason: where W_f
peaks relative to 1/2 or which end a threshold cuts, probsft.theory.classes), two statistics beside
it (Def. 3.3 relative to NLL: W_f-weighted mean p against NLL's 1/3; share of W_f mass above tau),
Prop. 3.2's check, and
the uniform-prior label-noise threshold against NLL (paper notes §2.4): with q = 1/V, NLL reduces
risk faster iff E < (V - 1)/V when s_f(1/V) < 1 (and the objective does when s_f(1/V) > 1).
"""

from __future__ import annotations

import json

from probsft.errors import UserError


def add_parser(sub):
    p = sub.add_parser("describe", help="symbolic derivation of an objective: s_f, W_f, peak, class")
    p.add_argument("spec", help="objective spec, e.g. nll, p, alpha(0.5), 'nll@p>=0.2', '(1-p**3)/3'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tau", type=float, default=0.5, help="Def. 3.3 class threshold (default 0.5)")
    p.add_argument("--vocab", type=int, default=1000,
                   help="V for the uniform-prior noise threshold vs NLL (default 1000)")
    p.set_defaults(func=run)


def uniform_prior_vs_nll(obj, V: int) -> dict:
    """The noise-rate crossover against NLL under q = 1/V (probsft.theory.risk.noise_crossing);
    in closed form E* = (V-1)/V (paper notes §2.4)."""
    import numpy as np

    import probsft
    from probsft.theory.risk import noise_crossing
    from probsft.theory.statistics import token_stats_of_q

    if V < 2:
        raise UserError(f"--vocab must be >= 2, got {V}")
    out = {"V": V, "e_star": None, "e_star_formula": "(V - 1)/V", "s_f_at_1_over_V": None,
           "winner_below": None, "winner_above": None}
    if obj.probe_params:
        return {**out, "statement": f"{obj.spec} takes {', '.join(obj.probe_params)} from the base "
                                    "model's probe; resolve it first for a uniform-prior statement"}
    uniform = np.full((1, V), 1.0 / V)
    stats = {k: v[0] for k, v in token_stats_of_q(obj.token_stats, uniform).items()}   # at q = 1/V
    with np.errstate(all="ignore"):
        s = float(obj.s(np.array([1.0 / V]), stats or None)[0])       # NLL has s = 1
    out["s_f_at_1_over_V"] = s
    if not np.isfinite(s):
        return {**out, "statement": f"s_f(1/V) is not finite numerically for V={V}; "
                                    "no uniform-prior statement"}
    crossing = noise_crossing(probsft.objective("nll"), obj, uniform, np.array([0]))
    e_star = crossing.e_star if np.isfinite(crossing.e_star) else None
    return {**out, "e_star": e_star, "winner_below": crossing.winner_below,
            "winner_above": crossing.winner_above,
            "statement": f"under a uniform prior over V={V} tokens, {crossing.statement()} "
                         f"(s_f(1/V) = {s:.4g})"}


def run(args) -> int:
    import probsft
    from probsft.theory.symbolic import derive, peak_text

    obj = probsft.objective(args.spec)
    d = derive(obj, tau=args.tau)
    uni = uniform_prior_vs_nll(obj if obj.interval is None or not obj.interval.has_quantile
                               else obj.base, args.vocab)
    if args.json:
        out = d.to_dict()
        out["peak_text"] = peak_text(d)
        out["uniform_prior_vs_nll"] = uni
        print(json.dumps(out, indent=2, default=str))
        return 0
    rows = [("objective", f"{d.spec}  ({d.label})"), ("f(p)", d.f),
            ("threshold I", d.interval or "none"), ("s_f(p) = -f'(p) p", d.s_f),
            ("W_f(p) = s_f(p)(1-p)", d.W_f),
            ("argmax W_f", f"{peak_text(d)}  ({d.peak_kind}, W_f = {d.peak_W:.4g})"
                           if d.peak == d.peak else d.peak_kind),       # NaN: an adaptive f
            ("convexity of f", f"{d.convexity}  (by {d.convexity_by})"),
            ("class", f"{d.klass}: {d.class_reason}"),
            ("vs NLL (Def. 3.3 stat.)", (f"{d.class_vs_nll}: W_f-weighted mean p = "
                                         f"{d.w_mean_p:.4f} vs NLL's {d.nll_w_mean_p:.4f}"
                                         if d.w_mean_p == d.w_mean_p else d.class_vs_nll)),
            ("tau-mass (2nd stat.)", (f"{d.class_tau}: {d.mass_above_tau:.4f} of the W_f mass lies "
                                      f"above tau = {d.tau:g}" if d.mass_above_tau == d.mass_above_tau
                                      else d.class_tau)),
            ("Prop. 3.2", {True: "consistent (peak on the side its convexity predicts)",
                           False: "VIOLATED", None: "does not apply (neither convex nor concave)"}
             [d.prop32_consistent]),
            ("noise threshold", uni["statement"])]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
