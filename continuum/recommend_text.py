"""A recommendation as text: the ``why`` lines, the ranked table and a small plot of the curve.

Pure functions of the dict that probsft.continuum.recommend.recommend returns (and `--json`
saves); the PNG of the same curve is probsft.figures.recommend.
"""

from __future__ import annotations

import math

from probsft.continuum.cells import MARGIN
from probsft.continuum.rule import RULE_TEXT, width_text


def text_plot(samples: dict, specs, height: int = 11) -> list[str]:
    """A small terminal plot of the smoothed Δ vs NLL (points) along p for ``specs`` (one letter
    each), the probe's p marked by a column of '|', 0 by a row of '-'."""
    specs = [s for s in specs if s in samples["delta"]]
    values = [v for s in specs for v in samples["delta"][s] if v is not None] + [0.0]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    P = samples["p"]
    col = min(range(len(P)), key=lambda i: abs(P[i] - samples["probe_p"]))
    grid = [[" "] * len(P) for _ in range(height)]
    row_of = lambda v: int(round((hi - v) / span * (height - 1)))       # noqa: E731
    for i in range(len(P)):
        grid[row_of(0.0)][i] = "-"
        for r in range(height):
            if i == col and grid[r][i] == " ":
                grid[r][i] = "|"
    letters = {}
    for k, s in enumerate(specs):
        letters[s] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k]
        for i, v in enumerate(samples["delta"][s]):
            if v is not None:
                grid[row_of(v)][i] = letters[s]
    lines = [f"Δ vs nll (points), {samples['supervision']}/{samples['optimizer']}, smoothed along "
             f"the probe's p; '|' = this data's p {samples['probe_p']:.2f}:"]
    for r in range(height):
        value = 0.0 if r == row_of(0.0) else hi - r * span / (height - 1)
        label = f"{value:+6.1f} " if r in (0, row_of(0.0), height - 1) else " " * 7
        lines.append(label + "".join(grid[r]))
    lines.append(" " * 7 + f"p {P[0]:.2f}" + " " * (len(P) - 12) + f"{P[-1]:.2f}")
    lines.append("        " + "  ".join(f"{letters[s]} = {s}" for s in specs))
    return lines


def explain(out: dict) -> list[str]:
    """The few checkable lines behind a recommendation."""
    pr, rec = out["probe"], out["recommendation"]
    by_spec = {r["resolved"]: r for r in out["candidates"]}
    lines = [f"probe: {pr['tokens']} response tokens of {pr['examples']} examples; mean p "
             f"{pr['mean_p']:.3f} (answer tokens {pr['answer_mean_p']:.3f}), mean entropy "
             f"{pr['mean_entropy']:.3f} nats, mean sum q^2 {pr['mean_sumsq']:.3f}",
             f"region: {pr['region']} by answer p {pr['placement_mean_p']:.3f} "
             f"(reference {pr['reference']}); the theory's expected winners there: "
             f"{', '.join(pr['expected_winners'])}",
             f"assumed label noise E = {out['noise']:g} ({out['supervision']} supervision); "
             f"alpha(auto) here is {out['alpha_auto']}"]
    chosen = by_spec[rec["resolved"]]
    if rec["source"] == "measured":
        m = chosen["measured"]
        lines.append(f"measured (curve of {out['curve']}): {rec['resolved']} vs nll Δ = {m['delta']:+.1f} "
                     f"exact-match points (CI {m['ci_low']:+.1f} .. {m['ci_high']:+.1f}) at p "
                     f"{pr['placement_mean_p']:.3f}, smoothed over the measured positions by "
                     f"{width_text(float(out['bandwidth']))} (chosen by leave-one-position-out); "
                     "nearest measured position "
                     f"{m['nearest_position'] or '-'} at distance {m['distance']:.2f}; within the "
                     f"{MARGIN:g}-point band of each position's best at {m['band']:.0%} of "
                     "them (same weights)")
        lines.append(f"rule ({out['rule']}): {RULE_TEXT[out['rule']]}")
        if out["position_test"]:
            lines.append(position_text(out["position_test"], rec, out["supervision"],
                                       out["optimizer"]))
    else:
        lines.append("no measured dose-response results: ranked by the first-order risk-reduction "
                     f"rate at E on the model's own distributions ({out['rate_tokens']} tokens); "
                     "the expected gain's size is not predicted by the linearised theory")
    lines += noise_lines(out)
    band = out["in_band"]
    if band:
        top, (hits, n) = next(iter(band.items()))
        mine = band.get(rec["resolved"])
        lines.append(f"probe-blind check: over the {n} measured positions of "
                     f"{out['supervision']}/{out['optimizer']}, {top} was within the "
                     f"{MARGIN:g}-point band of the best in {hits}"
                     + ("" if mine is None or rec["resolved"] == top else
                        f"; {rec['resolved']} in {mine[0]} of {mine[1]}"))
    if chosen["vs_nll"]:
        lines.append(f"first order: {chosen['vs_nll']}")
    rival = next((r for r in out["candidates"] if r["resolved"] not in (rec["resolved"], "nll")
                  and r["e_star_vs_nll"] is not None), None)
    if rival:
        lines.append(f"runner-up {rival['spec']} ({rival['class']}): {rival['vs_nll']}")
    lines.append(f"recommendation: {rec['objective']} ({chosen['class']}), confidence "
                 f"{rec['confidence']}")
    return lines


def noise_lines(out: dict) -> list[str]:
    """The probe's label-noise estimate and the answer for each measured noise kind, the one the
    estimate points to marked."""
    est, by_kind = out.get("noise_estimate"), out.get("by_supervision") or {}
    lines = []
    if est and not est["informative"]:
        lines.append(f"label noise (probe estimate): cannot say; {est['reason']}")
    elif est:
        (lo, hi), (rlo, rhi) = est["interval"], est["record_interval"]
        kind = (f"points to {est['points_to']}" if est["points_to"] else
                "the kind cannot be told" if est["kind"] == "cannot tell" else
                f"points to {est['kind']}, which the curve did not measure")
        lines.append(f"label noise (probe estimate): {est['token_rate']:.1%} of answer targets "
                     f"wrong (95% CI {lo:.1%} .. {hi:.1%}), {est['record_share']:.0%} of records "
                     f"(CI {rlo:.0%} .. {rhi:.0%}); {kind} ({est['reason']}). The model's own "
                     "confident mistakes count as noise, "
                     "wrong answers it finds plausible do not")
    if by_kind:
        mark = est["points_to"] if est else None
        lines.append("by noise kind (as the curve measured it): "
                     + ", ".join(f"{k} -> {v}" + (" <- the estimate" if k == mark else "")
                                 for k, v in by_kind.items()) + f" ({out['optimizer']})")
    return lines


def position_text(t: dict, rec: dict, supervision: str, optimizer: str) -> str:
    """Whether the probe's position changed the answer on the measured curves, with the numbers."""
    r = t["hit_rates"]
    head = (f"does position matter? on the measured curves ({t['positions']} positions, "
            f"{t['informative_cells']} of {t['cells']} cells where the choice matters) the rule "
            f"that reads the probe's p hit {r['rule']['informative']:.0f}% of held-out cells, the "
            f"noise-kind lookup {r['lookup']['informative']:.0f}%, always {t['constant']} "
            f"{r['constant']['informative']:.0f}%; rule minus the {t['position_blind']}: "
            f"{t['delta']:+.1f} points (95% CI {t['ci'][0]:+.1f} .. {t['ci'][1]:+.1f}; position "
            f"matters at >= +10 with the CI above 0)")
    if t["matters"]:
        return head + ": it does, so the answer follows the probe's p"
    return (head + f": on these curves the choice does not depend on position, so the answer is "
            f"the {t['position_blind']}'s for {supervision}/{optimizer}: {rec['objective']}")


def format_report(out: dict) -> str:
    """The recommendation, its ``why`` lines, the ranked table (measured Δ with its smoothed CI)
    and, with a measured curve, the text plot of the top candidates along p."""
    rows = [f"{'objective':<14} {'class':<14} {'rate@E':>10} {'E* vs nll':>10} "
            f"{'measured Δ [CI]':>22}"]
    for r in out["candidates"]:
        e = r["e_star_vs_nll"]
        e_txt = "-" if e is None else "none" if math.isinf(e) else "tie" if math.isnan(e) \
            else f"{e:.3g}"
        m = r["measured"]
        meas = "-" if m is None else f"{m['delta']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}]"
        rows.append(f"{r['spec']:<14} {r['class'].split(':')[0]:<14} {r['rate_at_noise']:>10.3g} "
                    f"{e_txt:>10} {meas:>22}")
    plot = []
    if out.get("measured_curve"):
        top = [r["resolved"] for r in out["candidates"]
               if r["measured"] is not None and r["resolved"] != "nll"][:4]     # nll is the 0 row
        plot = ["", *text_plot(out["measured_curve"], dict.fromkeys([out["recommendation"]["resolved"],
                                                                    *top]))]
    return "\n".join([f"recommended: {out['recommendation']['objective']}", *out["why"], "",
                      *rows, *plot, f"({out['seconds']:.1f} s)"])
