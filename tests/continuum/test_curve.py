"""The measured curve: built once from paired.csv files, saved, loaded strictly by version."""

import json
import math

import pytest

from probsft.continuum import curve as cv
from probsft.continuum.cells import read_grids
from probsft.continuum.rule import RULES, choose_bandwidth, dose_response
from probsft.errors import UserError
from tests.continuum.test_recommend import _write_paired


def test_curve_round_trip_keeps_cells_and_each_rules_width(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    a = _write_paired(tmp_path / "a" / "paired.csv")
    b = _write_paired(tmp_path / "b" / "paired.csv", half_width=0.5)
    curve = cv.build([a, b])
    cells = read_grids([a, b])
    assert curve.grids == ("a", "b") and len(curve.cells) == len(cells)
    for rule in RULES:                       # the width is the one leave-one-position-out picks
        assert curve.width(rule) == choose_bandwidth(cells, rule=rule)["bandwidth"]
    path = cv.save(curve, tmp_path / "curve.json")
    back = cv.load(path)
    assert back == curve
    # the rule reads the same smoothed numbers from the loaded curve as from the files
    h = back.width("band")
    assert (dose_response(list(back.cells), 0.6, "clean", "adamw", bandwidth=h)
            == dose_response(cells, 0.6, "clean", "adamw", bandwidth=h))


def test_curve_of_another_version_or_format_is_one_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    curve = cv.build([_write_paired(tmp_path / "a" / "paired.csv")])
    doc = curve.to_json()
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**doc, "version": 0}))
    with pytest.raises(UserError, match=r"version 0; this probsft reads version 1"):
        cv.load(old)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    with pytest.raises(UserError, match="not a probsft measured curve"):
        cv.load(other)
    with pytest.raises(UserError, match="no measured curve"):
        cv.load(tmp_path / "missing.json")
    with pytest.raises(UserError, match="no width for rule 'vote'"):
        curve.width("vote")


def test_the_shipped_curve_is_the_registered_grids_summary():
    """data/curves/measured.json is what `probsft reproduce` builds from the registered grids'
    committed paired.csv files (a rebuild gives the same file)."""
    from probsft.continuum.grids import CURVE, GRIDS
    from probsft.paths import ROOT

    shipped = cv.load()
    assert shipped.grids == tuple(GRIDS[k].folder for k in CURVE)
    files = [ROOT / "results" / GRIDS[k].folder / "paired.csv" for k in CURVE]
    cells = read_grids(files)
    assert [tuple(c[k] for k in cv.COLUMNS) for c in shipped.cells] == \
        [tuple(c[k] for k in cv.COLUMNS) for c in cells]
    assert all(math.isinf(h) or 0 < h < 1 for h in shipped.widths.values())


def test_shipped_curves_load_by_name():
    from probsft.continuum import curve as cv
    from probsft.continuum.recommend import as_curve

    for name, path in cv.SHIPPED.items():
        got = as_curve(name)
        assert got.cells == cv.load(path).cells and got.grids
    with pytest.raises(UserError, match="no measured curve"):
        as_curve("nonexistent.json")
