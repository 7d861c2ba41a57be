"""SimConfig / EscapeConfig: validation at construction, strict JSON, round trip."""

import json

import pytest

from probsft.config import load_config
from probsft.errors import ConfigError, SpecError
from probsft.sim.config import SimConfig
from probsft.sim.escape import EscapeConfig


@pytest.mark.parametrize("changes", [
    {"mode": "magic"}, {"optimizer": "lbfgs"}, {"noise_kind": "adversarial"}, {"dtype": "int8"},
    {"prior_strengths": (1.5,)}, {"prior_strengths": ()}, {"noise_rates": (1.0,)},
    {"noise_rates": (-0.1,)}, {"seeds": (-1,)}, {"seeds": (0.5,)}, {"vocab_size": 1},
    {"contexts": 0}, {"steps": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"uninformative_frac": 1.0},
    {"objectives": "nll"}, {"objectives": ("nll", "nll")}, {"prior_strengths": (True,)},
    {"easy_frac": 1.0}, {"easy_frac": -0.1}, {"snapshots": (0,)}, {"snapshots": (200,)},
    {"snapshots": (5, 5)}, {"snapshots": 5},
])
def test_bad_values_are_rejected(changes):
    with pytest.raises(ConfigError):
        SimConfig(**changes)


def test_bad_objective_spec_is_a_spec_error():
    with pytest.raises(SpecError):
        SimConfig(objectives=("nll", "not an objective ((("))


def test_json_round_trip_and_strict_keys(tmp_path):
    cfg = SimConfig(mode="theory", objectives=("nll", "-p^10", "nll@p<=Q10"), seeds=(3, 4))
    cfg.save(tmp_path / "c.json")
    assert load_config(SimConfig, tmp_path / "c.json") == cfg
    data = json.loads((tmp_path / "c.json").read_text())
    data["learning_rate"] = 0.1
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(SimConfig, tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError):
        load_config(SimConfig, tmp_path / "broken.json")
    with pytest.raises(ConfigError):
        cfg.replace(stepz=3)


def test_escape_config_validation():
    with pytest.raises(ConfigError):
        EscapeConfig(p0s=(0.9,))                       # above the escape level
    with pytest.raises(ConfigError):
        EscapeConfig(vocab_size=100, p0s=(1e-4,))      # below 1/V
    with pytest.raises(ConfigError):
        EscapeConfig.from_dict({"h": 0.1, "extra": 1})
    assert EscapeConfig.from_dict(EscapeConfig().to_dict()) == EscapeConfig()


def test_escape_resumes_instead_of_recomputing(tmp_path, monkeypatch):
    from probsft.sim import escape

    cfg = EscapeConfig(p0s=(1e-2, 0.1), vocab_size=200, max_steps=500)
    first = escape.run_escape(cfg, tmp_path, progress=False)
    monkeypatch.setattr(escape, "escape_times", lambda *a: (_ for _ in ()).throw(AssertionError))
    assert escape.run_escape(cfg, tmp_path, progress=False) == first
