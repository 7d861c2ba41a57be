"""The adapters' framework-free parts, in probsft's own environment: lazy framework imports, spec
checks before any framework loads, and a check-setup that fails when the loss or its scaling is wrong
(the framework runs themselves: test_frameworks.py)."""

import subprocess
import sys

import pytest
import torch

import probsft
from probsft.errors import ConfigError, SpecError
from probsft.integrations import hf_path, setup_check, swift_loss, verl_loss

FRAMEWORK_MODULES = ("swift", "verl", "llamafactory", "axolotl")


def test_importing_the_adapters_imports_no_framework():
    code = ("import sys, probsft.integrations.swift_loss, probsft.integrations.verl_loss, "
            "probsft.integrations.hf_path, probsft.integrations.setup_check, "
            "probsft.integrations.check_hf, probsft.integrations.check_swift, "
            "probsft.integrations.check_verl, probsft.cli; "
            f"print([m for m in {FRAMEWORK_MODULES!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("start", [
    lambda: swift_loss.register_from_env({"PROBSFT_SPEC": "not-a-spec"}),
    lambda: swift_loss.register_from_env({}),
    lambda: verl_loss.main({"PROBSFT_SPEC": "not-a-spec"}),
    lambda: verl_loss.main({"PROBSFT_SPEC": "deft"}),
])
def test_entry_points_exit_with_one_line_before_the_framework_loads(start):
    """These would import ms-swift / verl next; they are not installed here, so reaching that
    import would raise ModuleNotFoundError instead of the exit."""
    with pytest.raises(SystemExit) as exc:
        start()
    assert str(exc.value).startswith("probsft: error:")


def test_library_calls_raise_spec_errors_before_importing_the_framework():
    for make in (swift_loss.loss_class, verl_loss.sft_loss_fn, hf_path.llamafactory_trainer_class):
        with pytest.raises(SpecError):
            make("not-a-spec")
    with pytest.raises(SpecError, match="probe"):
        swift_loss.loss_class("alpha(auto)")
    with pytest.raises(SpecError, match="only log p"):
        verl_loss.sft_loss_fn("deft")


def test_spec_from_config_pops_the_key_and_falls_back_to_the_environment():
    cfg = {"probsft_spec": "-p", "stage": "sft"}
    assert hf_path.spec_from_config(cfg, {}) == "-p" and cfg == {"stage": "sft"}
    assert hf_path.spec_from_config({}, {"PROBSFT_SPEC": "nll"}) == "nll"
    with pytest.raises(ConfigError, match="probsft_spec"):
        hf_path.spec_from_config({}, {})


def test_run_check_refuses_unknown_frameworks_and_bad_specs_first(tmp_path):
    with pytest.raises(ConfigError, match="unknown framework"):
        setup_check.run_check("deepspeed-chat", "-p", tmp_path)
    with pytest.raises(SpecError):
        setup_check.run_check("swift", "not-a-spec", tmp_path)
    with pytest.raises(ConfigError, match="needs 'swift'"):
        setup_check.run_check("swift", "-p", tmp_path)


def _measured(**kw):
    base = dict(loss_err=1e-8, scaling_err=1e-8, param_err=1e-7, moved=1e-4, fused_err=0.0,
                fused_what="x", fused_tol=setup_check.TOL, micro_batches=setup_check.STEPS * setup_check.GA)
    return setup_check.Measured(**{**base, **kw})


@pytest.mark.parametrize("bad, step", [({"loss_err": 1e-3}, "loss"), ({"moved": 0.0}, "loss"),
                                       ({"micro_batches": 3}, "loss"), ({"scaling_err": 0.5}, "scaling"),
                                       ({"param_err": 1e-3}, "scaling"), ({"fused_err": 1e-3}, "fused"),
                                       ({"fused_err": None}, "fused")])
def test_judge_fails_exactly_the_step_that_is_off(bad, step):
    assert all(ok for _, ok, _ in setup_check.judge(_measured()))
    verdict = {name: ok for name, ok, _ in setup_check.judge(_measured(**bad))}
    assert [name for name, ok in verdict.items() if not ok] == [step]


def test_fused_err_sees_a_wrong_fused_loss(tmp_path, monkeypatch):
    model_dir = setup_check.tiny_model_dir(tmp_path)
    assert setup_check.fused_err("-p", model_dir) <= setup_check.TOL
    real = probsft.fused_linear_loss
    monkeypatch.setattr(probsft, "fused_linear_loss", lambda *a, **k: real(*a, **k) * 1.001)
    assert setup_check.fused_err("-p", model_dir) > 1e-4


@pytest.mark.slow
def test_check_setup_hf_fails_when_the_loss_ignores_num_items_in_batch(tmp_path, monkeypatch):
    """A compute_loss_func that takes each micro-batch's own mean (not sum / num_items_in_batch)
    doubles the step's gradient under accumulation: step 2 must fail, and step 1 too."""
    import probsft.validate.hf as hf

    real = hf.trainer_loss

    def per_micro_batch_mean(spec):
        inner = real(spec)
        return lambda outputs, labels, num_items_in_batch=None: inner(outputs, labels, None)

    monkeypatch.setattr(hf, "trainer_loss", per_micro_batch_mean)
    torch.manual_seed(0)
    _, steps = setup_check.run_check("hf", "-p", tmp_path)
    verdict = {name: ok for name, ok, _ in steps}
    assert verdict == {"loss": False, "scaling": False, "fused": True}
