"""Does the −p/NLL crossover move with model size? The within-task curve at two backbone sizes.

The fit dial (probsft.continuum.dial.DIALS["fit"], the 0.83M-parameter backbone) and the medium
dial (``DIALS["medium"]``, 8.9M parameters, 10.8x) read the same tasks at checkpoints of one
pretraining run each, placed on the continuum by the same build probe. For each task and
supervision kind the two sizes share (AdamW), the crossover of Δ(−p) = exact match(−p) −
exact match(NLL) along probe p is located at each size (probsft.validate.stats.censored_root) and
the shift (medium − tiny) gets a bootstrap interval that resamples each size's seeds
(probsft.validate.stats.crossover_shift).

Registered before the medium dial's runs (the rule and :data:`PAIR` committed first):

* prediction: the crossover moves towards the paper's ≈ 0.5 (probsft.continuum.predictions.
  PAPER_CROSSOVER) with size, i.e. the shift has the sign of 0.5 − the tiny's crossover;
* verdict (probsft.verdicts.verdict, prediction positive/negative by that sign, :data:`MARGIN`):
  **confirmed** when the 95% interval of the shift lies on the predicted side of 0, **refuted** on
  the other side, **equivalent** when neither and the 90% interval lies inside ±0.1 (the sizes'
  crossovers agree within 0.1 in p), **inconclusive** otherwise;
* a crossing outside the probed range is censored at its end (the smallest shift the positions
  allow); when both sizes are censored at the same end there is no crossover to move:
  **inconclusive** ("not located").

Verdicts are counted separately per (task, supervision); the claim "the crossover moves with
size" is read from those counts, not pooled.

    python -m probsft.continuum.sizes [--results results]     # writes results/dial_sizes/sizes.json
"""

from __future__ import annotations

import json
from pathlib import Path

from probsft.continuum.dial import DIALS, task_of
from probsft.continuum.predictions import PAPER_CROSSOVER
from probsft.errors import UserError

PAIR = ("fit", "medium")          # (smaller, larger) registered dials
MARGIN = 0.1                      # equivalence margin on the shift, in probe p
OPTIMIZER = "adamw"
OBJECTIVE = "p"
FOLDER = "dial_sizes"
CLAIM = (f"the −p − NLL crossover moves with model size towards the paper's ≈ {PAPER_CROSSOVER}")


def curves(verdicts: dict) -> dict[tuple[str, str], dict]:
    """{(task, supervision): {"p": [...], "delta": [...], "ci": [[lo, hi]...], "per_seed": [...]}}
    of the −p cells under AdamW, positions in probe-p order."""
    out: dict[tuple[str, str], list] = {}
    for c in verdicts["cells"]:
        if c["objective"] == OBJECTIVE and c["optimizer"] == OPTIMIZER:
            out.setdefault((task_of(c["position"]), c["supervision"]), []).append(c)
    res = {}
    for key, cs in out.items():
        cs.sort(key=lambda c: c["probe_answer_p"])
        S = min(len(c["per_seed"]) for c in cs)
        res[key] = {"positions": [c["position"] for c in cs],
                    "p": [c["probe_answer_p"] for c in cs], "delta": [c["delta"] for c in cs],
                    "ci": [[c["ci_low"], c["ci_high"]] for c in cs],
                    "per_seed": [c["per_seed"][:S] for c in cs]}
    return res


def crossing_text(value: float, censored: str | None) -> str:
    """A crossing as the table and the CLI print it: ``0.34``, or ``≥ 0.89`` / ``≤ 0.11`` when it
    is censored at the probed range's top / bottom."""
    return f"{value:.2f}" if censored is None else f"{'≥' if censored == 'above' else '≤'} {value:.2f}"


def decide(row: dict) -> str:
    """The registered verdict of one (task, supervision) row (module docstring)."""
    from probsft.verdicts import verdict

    if row["censored_a"] is not None and row["censored_a"] == row["censored_b"]:
        return "inconclusive"
    prediction = "positive" if row["a"] < PAPER_CROSSOVER else "negative"
    return verdict(prediction, tuple(row["ci"]), tuple(row["ci90"]), MARGIN)


def compare(small: dict, large: dict) -> dict:
    """The registered comparison of two dials' verdicts.json contents (smaller, larger)."""
    from probsft.validate.stats import crossover_shift

    a, b = curves(small), curves(large)
    rows = []
    for key in sorted(set(a) & set(b)):
        ca, cb = a[key], b[key]
        s = crossover_shift(ca["p"], ca["per_seed"], cb["p"], cb["per_seed"])
        row = {"task": key[0], "supervision": key[1], "optimizer": OPTIMIZER, **s}
        row["direction"] = ("not located" if s["censored_a"] and s["censored_a"] == s["censored_b"]
                            else "none" if abs(s["shift"]) < 1e-12 else
                            "towards" if abs(s["b"] - PAPER_CROSSOVER) < abs(s["a"] - PAPER_CROSSOVER)
                            else "away")
        row["verdict"] = decide(row)
        for side, c in (("small", ca), ("large", cb)):
            row[side] = {k: c[k] for k in ("positions", "p", "delta", "ci")}
        rows.append(row)
    if not rows:
        raise UserError("the two dials share no (task, supervision) curve under AdamW")
    from probsft.verdicts import VERDICTS

    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    return {"claim": CLAIM, "pair": list(PAIR), "margin": MARGIN,
            "paper_crossover": PAPER_CROSSOVER, "rows": rows, "counts": counts}


def write(results: Path) -> Path:
    """Compare the :data:`PAIR` dials' saved verdicts under ``results``; writes and returns
    ``results/dial_sizes/sizes.json``."""
    from probsft.files import atomic_write_json, rounded

    found = []
    for key in PAIR:
        path = Path(results) / DIALS[key].folder / "verdicts.json"
        if not path.exists():
            raise UserError(f"no analysed dial at {path}; run `{DIALS[key].command()}` first")
        found.append(json.loads(path.read_text()))
    out = Path(results) / FOLDER / "sizes.json"
    atomic_write_json(out, rounded(compare(*found)), indent=1)
    return out


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.sizes",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results", help="the results folder (default results)")
    args = ap.parse_args(argv)
    try:
        path = write(Path(args.results))
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    for r in json.loads(path.read_text())["rows"]:
        print(f"{r['task']} {r['supervision']}: tiny {crossing_text(r['a'], r['censored_a'])} -> "
              f"medium {crossing_text(r['b'], r['censored_b'])}, shift {r['shift']:+.2f} "
              f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]: {r['verdict']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
