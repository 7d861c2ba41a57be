"""Suite-wide: every test starts with IEEE floats (denormals on)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _denormals_back():
    """The continuum grid and `reproduce --only validate` flush denormals for speed (a process-wide
    CPU flag, probsft.validate.backbone); put it back after each test, so that a later test
    (hypothesis checks that subnormal floats exist) never depends on the order the tests ran in."""
    yield
    torch.set_flush_denormal(False)
