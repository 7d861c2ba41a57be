"""One device choice (validate.train.pick_device) for finetune, probe and evaluate.
Run: python -m pytest tests/validate/test_device.py
"""

import pytest
import torch

from probsft.cli import main
from probsft.errors import ConfigError
from probsft.validate.train import pick_device

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")


def test_cpu_and_auto_without_a_gpu():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        pick_device("tpu")


@NO_GPU
@pytest.mark.parametrize("command", ["probe", "evaluate"])
def test_cuda_without_a_gpu_fails_before_the_model_loads(command, tmp_path, capsys):
    missing = tmp_path / "no-model"
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    assert main([command, "--model", str(missing), "--data", str(tmp_path / "d.jsonl"),
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "Traceback" not in err
