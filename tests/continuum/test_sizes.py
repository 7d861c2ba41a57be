"""The crossover at two model sizes (probsft.continuum.sizes, validate.stats.crossover_shift) on
synthetic curves whose crossings are known: the shift and its interval, censoring at the probed
range, and the registered verdict rule."""

import numpy as np
import pytest

from probsft.continuum import sizes
from probsft.continuum.dial import DIALS
from probsft.errors import UserError
from probsft.validate.stats import censored_root, crossover_shift

X = np.array([0.1, 0.3, 0.5, 0.7, 0.85])


def _curve(root, seeds=4, noise=2.0, seed=0):
    """Paired differences rising through 0 at ``root``: [P, S], slope 40 points per unit p."""
    rng = np.random.default_rng(seed)
    return (X - root)[:, None] * 40 + rng.normal(0, noise, (len(X), seeds))


def test_censored_root_interpolates_or_names_the_end():
    assert censored_root(X, X - 0.4) == (pytest.approx(0.4), None)
    assert censored_root(X, X + 1) == (0.1, "below")
    assert censored_root(X, -(X + 1)) == (0.85, "above")


def test_a_censored_crossing_is_printed_as_a_bound():
    assert sizes.crossing_text(0.3412, None) == "0.34"
    assert sizes.crossing_text(0.885, "above") == "≥ 0.89"
    assert sizes.crossing_text(0.1, "below") == "≤ 0.10"


def test_shift_recovers_a_known_move_and_a_null_one():
    s = crossover_shift(X, _curve(0.3), X, _curve(0.6, seed=1))
    assert s["shift"] == pytest.approx(0.3, abs=0.05)
    assert s["ci"][0] > 0.15 and s["ci"][1] < 0.45
    assert s["ci"][0] <= s["ci90"][0] <= s["ci90"][1] <= s["ci"][1]
    assert s["ci_a"][0] < 0.3 < s["ci_a"][1] and s["ci_b"][0] < 0.6 < s["ci_b"][1]
    behind = crossover_shift(X, _curve(0.4), X, -_curve(-2))      # never crosses: censored above
    assert behind["censored_b"] == "above" and behind["ci_b"] == [0.85, 0.85]
    assert behind["frac_censored"] == 1.0
    same = crossover_shift(X, _curve(0.4), X, _curve(0.4, seed=1))
    assert same["ci"][0] < 0 < same["ci"][1]
    with pytest.raises(ValueError, match="P >= 2, S >= 2"):
        crossover_shift(X, _curve(0.4)[:, :1], X, _curve(0.4))


def _row(a, b, ci, ci90, ca=None, cb=None):
    return {"a": a, "b": b, "ci": ci, "ci90": ci90, "censored_a": ca, "censored_b": cb}


def test_verdict_rule_reads_direction_towards_the_papers_crossover():
    assert sizes.decide(_row(0.3, 0.45, [0.05, 0.25], [0.07, 0.2])) == "confirmed"
    assert sizes.decide(_row(0.3, 0.15, [-0.25, -0.05], [-0.2, -0.07])) == "refuted"
    assert sizes.decide(_row(0.7, 0.55, [-0.25, -0.05], [-0.2, -0.07])) == "confirmed"
    assert sizes.decide(_row(0.3, 0.32, [-0.12, 0.15], [-0.08, 0.09])) == "equivalent"
    assert sizes.decide(_row(0.3, 0.32, [-0.3, 0.3], [-0.2, 0.2])) == "inconclusive"
    # both sizes behind everywhere: no crossover to move, whatever the interval says
    assert sizes.decide(_row(0.85, 0.85, [0.0, 0.0], [0.0, 0.0], "above", "above")) == "inconclusive"


def _verdicts(curves_by_task):
    cells = []
    for (task, sup), (x, y) in curves_by_task.items():
        for k, (p, ys) in enumerate(zip(x, y)):
            cells.append({"position": f"{task}@{100 * (k + 1)}", "objective": "p",
                          "optimizer": "adamw", "supervision": sup, "probe_answer_p": float(p),
                          "delta": float(np.mean(ys)), "ci_low": float(np.mean(ys)) - 3,
                          "ci_high": float(np.mean(ys)) + 3,
                          "per_seed": [float(v) for v in ys]})
            cells.append({**cells[-1], "objective": "deft"})          # other objectives ignored
    return {"cells": cells}


def test_compare_pairs_the_shared_curves_and_counts_verdicts(tmp_path):
    small = _verdicts({("t_a", "token"): (X, _curve(0.3)), ("t_a", "clean"): (X, -_curve(-2)),
                       ("t_b", "token"): (X, _curve(0.5))})
    large = _verdicts({("t_a", "token"): (X, _curve(0.6, seed=2)),
                       ("t_a", "clean"): (X, -_curve(-2, seed=3))})
    res = sizes.compare(small, large)
    assert [(r["task"], r["supervision"]) for r in res["rows"]] == [("t_a", "clean"), ("t_a", "token")]
    clean, token = res["rows"]
    assert clean["censored_a"] == clean["censored_b"] == "above" and clean["verdict"] == "inconclusive"
    assert clean["direction"] == "not located"
    assert token["verdict"] == "confirmed" and token["direction"] == "towards"
    assert res["counts"] == {"confirmed": 1, "refuted": 0, "equivalent": 0, "inconclusive": 1}
    with pytest.raises(UserError, match="share no"):
        sizes.compare(small, _verdicts({("t_z", "token"): (X, _curve(0.5))}))


def test_write_needs_both_dials_analysed(tmp_path):
    with pytest.raises(UserError, match=DIALS["fit"].folder):
        sizes.write(tmp_path)


def test_the_medium_dial_is_registered_at_the_medium_size():
    d = DIALS["medium"]
    assert d.size == "medium" and sizes.PAIR == ("fit", "medium")
    assert "--size medium" in d.build_command() and "--save-at 25 50 75 100" in d.build_command()
    assert set(d.config.objectives) == {"nll", "p", "alpha(0.1)", "deft"}
    assert d.config.supervision == ("clean", "token") and d.config.optimizers == ("adamw",)
    assert "--size" not in DIALS["fit"].build_command()
    # the shipped medium is this dial's build, its probe saved at exactly these steps
    from probsft.validate.backbone import SHIPPED_MEDIUM

    assert d.model_path == SHIPPED_MEDIUM and sorted(d.checkpoints()) == list(d.save_at)


def test_the_sizes_figure_draws_every_row_from_saved_json(tmp_path):
    import json

    from probsft.figures.sizes import draw
    from probsft.files import rounded

    res = sizes.compare(_verdicts({("t_a", "token"): (X, _curve(0.3)),
                                   ("t_a", "clean"): (X, -_curve(-2))}),
                        _verdicts({("t_a", "token"): (X, _curve(0.6, seed=2)),
                                   ("t_a", "clean"): (X, -_curve(-2, seed=3))}))
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps(rounded(res)))
    png, svg = draw(path, tmp_path / "sizes")
    assert png.stat().st_size > 10_000 and "shift +0.3" in svg.read_text()
