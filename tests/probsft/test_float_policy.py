"""The float policy of results files (probsft.files.SIGNIFICANT): unit behaviour, and real writers
that write the same bytes when the last bits of their float64 inputs change, as they do between
CPUs (issue 23: AVX512/AMX kernels, summation order, thread counts)."""

import json
import math
import os
import re
import types

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from probsft import paths
from probsft.files import (SIGNIFICANT, atomic_write_json, csv_text, json_text, round_float,
                           rounded)
from probsft.sim.config import SimConfig

SIM = SimConfig(mode="learning", objectives=("nll", "p"), prior_strengths=(0.0, 0.1, 1.0),
                noise_rates=(0.0, 0.3), seeds=(0, 1), vocab_size=8, contexts=64, eval_contexts=64,
                feature_dim=6, steps=30, lr=1.0)


def test_last_bit_neighbours_round_to_one_value():
    assert round_float(0.24999999999999997) == round_float(0.24999999999999994) == 0.25
    assert repr(round_float(1 / 3)) == "0.333333333333"
    assert round_float(1 / 3, digits=None) == 1 / 3
    assert round_float(-2.5e-300 / 3) == -8.33333333333e-301


def test_non_finite_values_are_kept():
    assert math.isnan(round_float(float("nan")))
    assert round_float(float("inf")) == math.inf and round_float(-math.inf) == -math.inf


@given(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_rounding_is_idempotent_and_within_half_a_unit_of_the_last_digit(x):
    r = round_float(x)
    assert round_float(r) == r
    assert abs(r - x) <= 0.5 * 10.0 ** (1 - SIGNIFICANT) * abs(x) + math.ulp(x)


def test_rounded_keeps_ints_bools_text_and_none_and_converts_numpy_and_torch():
    obj = {"n": 3, "flag": True, "name": "nll", "none": None, "p": 1 / 3,
           "nested": [(np.float64(2 / 3), np.int64(7), np.bool_(False))],
           "arr": np.array([0.1 + 0.2, 1.0]), "t": torch.tensor([1 / 3], dtype=torch.float64),
           "f32": np.float32(0.1)}
    out = rounded(obj)
    assert out == {"n": 3, "flag": True, "name": "nll", "none": None, "p": 0.333333333333,
                   "nested": [[0.666666666667, 7, False]], "arr": [0.3, 1.0],
                   "t": [0.333333333333], "f32": 0.10000000149}
    assert type(out["n"]) is int and type(out["flag"]) is bool
    assert type(out["nested"][0][1]) is int and type(out["nested"][0][2]) is bool
    assert obj["p"] == 1 / 3                                   # the input is not changed


def test_json_writes_rounded_floats_and_non_finite_values_json_loads_reads_back(tmp_path):
    text = json_text({"a": 0.1 + 0.2, "nan": math.nan, "inf": math.inf, "k": [1, 2]}, indent=None)
    assert text == '{"a": 0.3, "nan": NaN, "inf": Infinity, "k": [1, 2]}'
    back = json.loads(text)
    assert math.isnan(back["nan"]) and back["inf"] == math.inf
    atomic_write_json(tmp_path / "m.json", {"train/loss": 1.2000000000000002})
    assert (tmp_path / "m.json").read_text() == '{\n  "train/loss": 1.2\n}\n'


def test_csv_rounds_floats_leaves_none_empty_and_refuses_unknown_keys():
    text = csv_text([{"x": 0.24999999999999994, "n": 2, "s": None}, {"x": math.nan}],
                    ["x", "n", "s"])
    assert text == "x,n,s\n0.25,2,\nnan,,\n"
    with pytest.raises(ValueError):
        csv_text([{"x": 1.0, "y": 2.0}], ["x"])


def test_a_config_is_saved_exactly_and_a_resumed_sweep_accepts_it(tmp_path):
    """Configs are inputs compared by equality on resume: never rounded."""
    from probsft.config import load_config
    from probsft.sim.sweep import run_sweep

    cfg = SIM.replace(lr=1 / 3, objectives=("nll",))
    run_sweep(cfg, tmp_path, progress=False)
    assert load_config(type(cfg), tmp_path / "config.json") == cfg
    run_sweep(cfg, tmp_path, progress=False)                   # no "different config" refusal


WRITES_AROUND_THE_POLICY = re.compile(r"csv\.(DictWriter|writer)\(|"
                                      r"(atomic_write|write_text)\(.*json\.dumps\(")


def test_no_module_writes_csv_or_json_files_around_the_policy():
    """CSV text comes only from probsft.files.csv_text, JSON files only from json_text."""
    found = []
    for area in ("theory", "sim", "validate", "continuum", "figures", "probsft"):
        for root, _dirs, files in os.walk(paths.ROOT / area):      # not into probsft's symlinks
            for name in files:
                path = os.path.join(root, name)
                if not name.endswith(".py") or path == str(paths.ROOT / "probsft" / "files.py"):
                    continue
                with open(path) as fh:
                    found += [f"{os.path.relpath(path, paths.ROOT)}:{n}" for n, line in
                              enumerate(fh, 1) if WRITES_AROUND_THE_POLICY.search(line)]
    assert found == []


# ---------------------------------------------------------------------------------------------
# real writers under two CPUs' worth of last-bit differences


class _FsumNumpy(types.ModuleType):
    """numpy whose plain ``sum`` is math.fsum (exactly rounded): another summation order."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def sum(x, *args, **kwargs):
        return np.sum(x, *args, **kwargs) if args or kwargs else math.fsum(np.ravel(x))


def _floats(derivations):
    return [v for d in derivations for v in (d.w_mean_p, d.mass_above_tau)]


def test_theory_table_is_the_same_bytes_under_two_summation_orders(tmp_path, monkeypatch):
    """weights.csv (the issue's 0.24999999999999997 vs ...94) from numpy's pairwise sum and from
    math.fsum in the quadrature of probsft.theory.classes (where the W_f statistics live)."""
    from probsft.theory import classes, symbolic
    from probsft.theory.tables import TABLE_COLUMNS, save_table

    specs = ["nll", "log(1-p)"]
    pairwise = symbolic.table(specs)
    save_table(pairwise, tmp_path / "a.csv", tmp_path / "a.md")
    monkeypatch.setattr(classes, "np", _FsumNumpy("numpy"))
    exact = symbolic.table(specs)
    save_table(exact, tmp_path / "b.csv", tmp_path / "b.md")
    assert _floats(pairwise) != _floats(exact)                 # the last bits did change
    assert np.allclose(_floats(pairwise), _floats(exact), rtol=1e-14, atol=0)
    raw = [csv_text([{k: d.to_dict()[k] for k in TABLE_COLUMNS} for d in ds], TABLE_COLUMNS,
                    digits=None) for ds in (pairwise, exact)]
    assert raw[0] != raw[1]                                    # so repr would write other bytes
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def _softmax_via_logsumexp(z, dim=-1, **kwargs):
    """softmax by another kernel: exp(z - logsumexp z), equal up to the last bits."""
    return torch.exp(z - torch.logsumexp(z, dim, keepdim=True))


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _metrics(cfg):
    """Raw (unrounded) final-step metrics of every objective on every cell: a flat list."""
    from probsft.sim.continuum import build
    from probsft.sim.sweep import grid, run_objective

    batch = build(cfg, grid(cfg))
    with torch.no_grad():
        return [float(v) for spec in cfg.objectives
                for res in [run_objective(cfg, spec, batch)[cfg.steps]]
                for k in sorted(res) for v in res[k]]


def test_sim_sweep_and_boundary_are_the_same_bytes_under_threads_and_softmax_kernels(
        tmp_path, monkeypatch, threads):
    """results.csv (run_sweep) and boundary.csv (save_boundary): torch on 1 thread with its
    softmax kernel, then on 2 threads with softmax as exp(z - logsumexp z). (run_sweep pins one
    thread itself, so there the kernel makes the difference; the thread count reaches boundary.)"""
    from probsft.sim.phase import COLUMNS, boundary, save_boundary
    from probsft.sim.sweep import run_sweep

    runs = []
    for n, (folder, softmax) in enumerate([("a", torch.softmax), ("b", _softmax_via_logsumexp)]):
        threads(n + 1)
        monkeypatch.setattr(torch, "softmax", softmax)
        run_sweep(SIM, tmp_path / folder, progress=False)
        save_boundary(SIM, tmp_path / folder)
        runs.append((_metrics(SIM), boundary(SIM)))
    (m_a, b_a), (m_b, b_b) = runs
    assert m_a != m_b and np.allclose(m_a, m_b, rtol=1e-13, atol=1e-300)   # last bits changed
    assert csv_text(b_a, COLUMNS, digits=None) != csv_text(b_b, COLUMNS, digits=None)
    for name in ("results.csv", "boundary.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
