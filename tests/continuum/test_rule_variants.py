"""The rule variants tried and not adopted (probsft.continuum.rule_variants), on known cells."""

import math

from probsft.continuum.rule import lopo_cells
from probsft.continuum.rule_variants import lopo, main


def _cell(x, spec, d, sup="clean", half_width=0.5):
    return {"position": f"x{x}", "probe_answer_p": x, "supervision": sup, "optimizer": "adamw",
            "objective": spec, "n_seeds": 5, "delta": d, "ci_low": d - half_width,
            "ci_high": d + half_width, "mde": 3.0, "verdict": ""}


XS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
# "p" is best by 3 at four positions and loses 30 at the last two; alpha(2) is +7 everywhere
RISKY = [c for i, x in enumerate(XS)
         for c in (_cell(x, "p", 10 if i < 4 else -30), _cell(x, "alpha(2)", 7))]


def _hits(rows):
    return sum(r["hit"] for r in rows), len(rows)


def test_band_variant_is_the_registered_rule():
    step = [_cell(x, "p", d) for x, d in zip(XS, (-10, -10, -10, 10, 10, 10))]
    for cells in (step, RISKY):
        for width in (0.05, math.inf, None):
            got = lopo(cells, "band", width=width)
            want = lopo_cells(cells, width, rule="band")
            key = lambda r: r["position"]                       # noqa: E731
            assert ([(r["position"], r["recommended"], r["hit"]) for r in sorted(got, key=key)]
                    == [(r["position"], r["recommended"], r["hit"]) for r in sorted(want, key=key)])


def test_capped_regret_and_minimax_prefer_the_safe_objective():
    # band: "p" is in the band most often, so it is picked everywhere: right at four, wrong at two
    band = lopo(RISKY, "band", width=math.inf)
    assert {r["recommended"] for r in band} == {"p"} and _hits(band) == (4, 6)
    # capped regret, a position left out: "p" costs 0 at its other "p" positions and C at the
    # others, alpha(2) 3 and 0. Capped at 20 (and minimax: worst 37 against 3), alpha(2) has the
    # smaller mean everywhere, right only at the last two
    for variant in ("regret20", "minimax"):
        rows = lopo(RISKY, variant, width=math.inf)
        assert {r["recommended"] for r in rows} == {"alpha(2)"} and _hits(rows) == (2, 6)
    # capped at 5 the balance turns on the position left out: alpha(2) (2 vs 1.8) where "p" is
    # best, "p" (1 vs 2.4) where alpha(2) is: wrong everywhere
    rows = lopo(RISKY, "regret5", width=math.inf)
    assert _hits(rows) == (0, 6)
    assert [r["recommended"] for r in sorted(rows, key=lambda r: r["position"])] == \
        ["alpha(2)"] * 4 + ["p"] * 2


def test_pooled_variant_decides_noisy_kinds_together():
    # token and plausible noise: "p" +20, alpha(2) 0; whole-answer: "p" -10, alpha(2) +5;
    # clean: "p" 0, alpha(2) +4, everywhere
    kinds = {"token": (20, 0), "plausible": (20, 0), "answer": (-10, 5), "clean": (0, 4)}
    cells = [c for x in XS for sup, (dp, da) in kinds.items()
             for c in (_cell(x, "p", dp, sup), _cell(x, "alpha(2)", da, sup))]

    def answers(variant, sup):
        return [r for r in lopo(cells, variant, width=math.inf) if r["supervision"] == sup]

    own, pooled = answers("band", "answer"), answers("pooled", "answer")
    assert _hits(own) == (6, 6) and {r["recommended"] for r in own} == {"alpha(2)"}
    # pooled, an answer cell sees the other five positions' token and plausible groups, where "p"
    # is in the band (10), and their answer groups, where alpha(2) is (5): "p", wrong everywhere.
    # Its own position's other kinds stay out (the whole position is held out)
    assert _hits(pooled) == (0, 6) and {r["recommended"] for r in pooled} == {"p"}
    # the clean kind is never pooled: alpha(2), right everywhere (pooled with the noisy kinds it
    # would tie 10/20 with "p" and lose on the mean Δ, 7.5 against 2.25)
    clean = answers("pooled", "clean")
    assert _hits(clean) == (6, 6) and {r["recommended"] for r in clean} == {"alpha(2)"}


def test_script_prints_each_variant(tmp_path, capsys):
    import csv

    from probsft.continuum.analysis import PAIRED_FIELDS

    path = tmp_path / "paired.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=PAIRED_FIELDS, extrasaction="ignore")
        w.writeheader()
        for c in RISKY:
            w.writerow({**c, "position": c["position"], "tost_low": "", "tost_high": ""})
    main([str(path), "--variants", "band", "regret10"])
    out = capsys.readouterr().out.splitlines()
    for line, variant in zip(out, ("band", "regret10")):       # nested widths, as lopo(width=None)
        hits, n = _hits(lopo(RISKY, variant))
        assert line.split()[:3] == [variant, f"{hits}/{n}", "clean"]
