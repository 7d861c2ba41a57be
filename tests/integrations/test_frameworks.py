"""The adapters against the real frameworks (pytest -m adapters; `.ci/run` runs them as its own step).

Each framework runs in its own cached venv (tests/integrations/venvs.py) with this checkout on
PYTHONPATH: ``probsft check-setup --framework F`` trains a tiny local Llama three optimizer steps
(2 micro-batches accumulated per step) inside F and must report (a) the loss equal to probsft's
float64 loss on the same logits, (b) ``nll`` equal to F's own cross-entropy per micro-batch and in
the weights after the steps (accumulation scaling), (c) moving weights, and the fused path equal to
the logits path. A bad spec must stop F at start-up with probsft's error line, no traceback.

Locally a venv that cannot be built skips its tests with the reason; in CI (CI=true) it fails them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import venvs  # noqa: E402

pytestmark = pytest.mark.adapters
ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _python(framework):
    """The framework venv's interpreter, or (main env frameworks) this one."""
    if framework not in venvs.REQUIREMENTS:
        return sys.executable
    try:
        return str(venvs.python_of(venvs.ensure(framework)))
    except RuntimeError as err:
        if IN_CI:
            pytest.fail(str(err))
        pytest.skip(f"{framework} venv not built here: {err}")


def _run(framework, args, env=None, timeout=900):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM":
               "false", "WANDB_MODE": "disabled", "AXOLOTL_DO_NOT_TRACK": "1", **(env or {})}
    return subprocess.run([_python(framework), *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("framework, spec", [("hf", "dft"), ("trl", "-p"), ("swift", "-p"),
                                             ("verl", "alpha(0.5)"), ("llamafactory", "focal(2)"),
                                             ("axolotl", "alpha(2)@p<0.9")])
def test_check_setup_passes_inside_the_framework(framework, spec, tmp_path):
    out = tmp_path / "check.json"
    proc = _run(framework, ["-m", "probsft", "check-setup", "--framework", framework,
                            f"--spec={spec}", "--json", str(out)])
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    m = result["measured"]
    assert result["ok"] and proc.returncode == 0, json.dumps(result, indent=1)
    assert m["micro_batches"] == 6 and m["loss_err"] <= 1e-5 and m["scaling_err"] <= 1e-5
    assert m["param_err"] <= 1e-5 and m["moved"] > 0


def _assert_startup_error(proc, says, *, not_reached):
    """Exit != 0 with probsft's error line (a bad spec's message goes on with the spec grammar, as
    in probsft's own CLI), no traceback, and the framework never got to ``not_reached``."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("probsft: error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
    assert says in errors[0] and "Traceback" not in proc.stderr
    assert not_reached not in proc.stdout + proc.stderr


def test_swift_stops_at_start_up_on_a_bad_spec(tmp_path):
    proc = _run("swift", ["-m", "swift.cli.sft", "--model", str(tmp_path / "never-loaded"),
                          "--dataset", str(tmp_path / "x.jsonl"), "--loss_type", "probsft",
                          "--external_plugins", str(ROOT / "integrations" / "swift_plugin.py"),
                          "--output_dir", str(tmp_path / "out")],
                env={"PROBSFT_SPEC": "bogus"}, timeout=300)
    _assert_startup_error(proc, "'bogus'", not_reached="model_parameter_info")


@pytest.mark.parametrize("spec, says", [("bogus", "'bogus'"), ("deft", "only log p")])
def test_verl_entry_point_stops_before_verl_starts(spec, says):
    """deft needs the logits, which verl's engine never hands the loss (only log p)."""
    proc = _run("verl", ["-m", "probsft.integrations.verl_loss", "trainer.total_epochs=1"],
                env={"PROBSFT_SPEC": spec}, timeout=300)
    _assert_startup_error(proc, says, not_reached="Total training steps")


def test_llamafactory_stops_at_start_up_on_a_bad_spec(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"model_name_or_path: {tmp_path / 'never-loaded'}\nstage: sft\ndo_train: true\n"
                   f"finetuning_type: full\ndataset: x\noutput_dir: {tmp_path / 'out'}\n"
                   "probsft_spec: bogus\n")
    proc = _run("llamafactory", ["-m", "probsft.integrations.hf_path", str(cfg)], timeout=300)
    _assert_startup_error(proc, "'bogus'", not_reached="Loading")


def test_axolotl_stops_at_start_up_on_a_bad_spec(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"base_model: {tmp_path / 'never-loaded'}\ndatasets:\n  - path: x.jsonl\n"
                   f"    type: alpaca\noutput_dir: {tmp_path / 'out'}\nmicro_batch_size: 1\n"
                   "num_epochs: 1\nlearning_rate: 0.001\nsequence_len: 64\n"
                   "plugins:\n  - probsft.integrations.axolotl_plugin.ProbsftPlugin\n"
                   "probsft_spec: bogus\n")
    proc = _run("axolotl", ["-m", "axolotl.cli.train", str(cfg)], timeout=300)
    _assert_startup_error(proc, "'bogus'", not_reached="Loading")
