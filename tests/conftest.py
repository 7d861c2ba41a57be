"""Suite-wide: every test starts with IEEE floats (denormals on); the fused loss's layout
calibration (probsft.theory.fused_auto) writes into a temporary cache, not the user's."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _denormals_back():
    """The continuum grid and `reproduce --only validate` flush denormals for speed (a process-wide
    CPU flag, probsft.validate.backbone); put it back after each test, so that a later test
    (hypothesis checks that subnormal floats exist) never depends on the order the tests ran in."""
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(autouse=True, scope="session")
def _calibration_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PROBSFT_CACHE_DIR", str(tmp_path_factory.mktemp("probsft_cache")))
    yield
    mp.undo()
