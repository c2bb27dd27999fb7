"""Test-wide settings: deterministic torch on few threads (CI has two cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


torch.set_num_threads(2)
