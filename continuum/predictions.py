"""The theory's predictions for the real-model experiment, stated once.

Used by the probe (continuum region and expected winners of a mean p), the experiment (predicted sign
of −p minus NLL per region and supervision, the verdict of a measured paired difference) and the
figure (region borders and the predicted sign drawn beside the measured curve).

Continuum regions (paper Tables 1-3, notes §6.9), placed by the base model's mean p of the answer
tokens (:data:`PLACEMENT`; the end-of-response token is a format token, see probsft.validate.probe):

==================  ==============  =========================================================
region              mean p          predicted sign of Δ = metric(−p) − metric(NLL)
==================  ==============  =========================================================
model-weak          [0, 0.25)       ``nll`` (Δ < 0), clean or noisy (uniform prior: NLL wins
                                    for any error rate E < (V−1)/V)
model-intermediate  [0.25, 0.65)    ``tie`` (|Δ| < 2 points): no objective is expected to win
model-strong        [0.65, 1]       clean: ``nll_or_tie`` (Δ ≤ 0 in the linearised theory; the
                                    paper's math gain is attributed to noisy supervision);
                                    noisy (token, answer or plausible): ``p`` (Δ > 0; the
                                    noisy-label term B > 0 dominates)
==================  ==============  =========================================================

Verdict of one cell (:func:`verdict`), from the 95% CI of Δ and the 90% CI of the TOST equivalence
test with margin ±:data:`TIE_MARGIN`:

* measured sign: ``p`` if the 95% CI lies above 0, ``nll`` if below, none otherwise;
  ``equivalent`` if the 90% CI lies inside (−margin, +margin);
* prediction ``p`` or ``nll``: *confirmed* if the measured sign is the predicted one, *refuted* if it
  is the opposite, *equivalent* if there is no sign but equivalence (a demonstrated tie where a
  winner was predicted), *inconclusive* otherwise;
* prediction ``tie``: *confirmed* only by equivalence, *refuted* by a sign without equivalence,
  *inconclusive* otherwise;
* prediction ``nll_or_tie``: *confirmed* by sign ``nll`` or by equivalence, *refuted* by sign ``p``
  without equivalence, *inconclusive* otherwise.
"""

from __future__ import annotations

from probsft import verdicts
from probsft.validate.regions import BORDERS, PLACEMENT, REGIONS, Region, region_of  # noqa: F401

TIE_MARGIN = 0.02                 # ±2 points of the metric: the equivalence margin of a tie
PAPER_CROSSOVER = 0.5             # the paper's "no winner" point (medical, mean p ≈ 0.5)
SUPERVISION = ("clean", "token", "answer", "plausible")
VERDICTS = verdicts.VERDICTS


# (region, supervision) -> predicted sign of metric(−p) − metric(NLL)
PREDICTIONS: dict[tuple[str, str], str] = {
    **{("model-weak", s): "nll" for s in SUPERVISION},
    **{("model-intermediate", s): "tie" for s in SUPERVISION},
    ("model-strong", "clean"): "nll_or_tie",
    **{("model-strong", s): "p" for s in SUPERVISION if s != "clean"},
}
SIGN = {"p": 1, "nll": -1, "tie": 0, "nll_or_tie": -0.5}   # drawn: +1 above 0, −1 below, 0 on it


def predict(region: str, supervision: str) -> str:
    """The predicted sign of Δ = metric(−p) − metric(NLL): 'p', 'nll', 'tie' or 'nll_or_tie'."""
    return PREDICTIONS[(region, supervision)]


# The predicted sign of −p − NLL in the terms of the one verdict rule (probsft.verdicts).
RULE_OF = {"p": "positive", "nll": "negative", "tie": "tie", "nll_or_tie": "not_positive"}


def is_equivalent(ci90: tuple[float, float], margin: float = TIE_MARGIN) -> bool:
    """TOST at level 5% with the experiment's margin (probsft.verdicts.is_equivalent)."""
    return verdicts.is_equivalent(ci90, margin)


def verdict(prediction: str, ci95: tuple[float, float], ci90: tuple[float, float],
            margin: float = TIE_MARGIN) -> str:
    """One of :data:`VERDICTS`: the one verdict rule (probsft.verdicts) for the prediction's sign,
    the measured sign from the 95% CI, equivalence from the 90% (TOST) CI."""
    if prediction not in RULE_OF:
        raise ValueError(f"unknown prediction {prediction!r}")
    return verdicts.verdict(RULE_OF[prediction], ci95, ci90, margin)


def by_kind(rows) -> dict[tuple[str, str], list]:
    """{(supervision, optimizer): [row, ...]} in order of first appearance: the one grouping of
    cells, best-α rows or verdicts by the kind of run (analysis, report and figure)."""
    out: dict[tuple[str, str], list] = {}
    for r in rows:
        out.setdefault((r["supervision"], r["optimizer"]), []).append(r)
    return out
