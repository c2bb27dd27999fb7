"""Test-wide settings: deterministic torch on few threads (CI has two cores), and the markers.

Tests that need a system part carry its marker: ``redis`` (Debian's redis-server), ``browser``
(Debian's chromium), ``gpu`` (a CUDA device). Where that part is missing they are skipped with
the package to install, except under CI (``CI`` set), whose .ci/run installs redis-server and
chromium: there a missing one fails its tests. ``slow`` marks the long tests, so that
``-m "not slow"`` is a quick selection while developing.

The servers the tests start run the torch backend: the default on a CPU (``auto``, ONNX Runtime)
exports the model once per data directory, 10-20 s that every test's fresh server would pay.
``test_default_backend.py`` starts the default itself.
"""

import os
import shutil

import pytest
import torch

os.environ.setdefault("TDMI_BACKEND", "torch")  # inherited by the servers started as subprocesses


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _missing() -> dict[str, str]:
    """Marker -> why its tests cannot run on this machine."""
    missing = {}
    if not os.environ.get("CI"):  # CI installs both: there a missing one fails its tests
        if shutil.which("redis-server") is None:
            missing["redis"] = "redis-server is not installed (apt-get install redis-server)"
        if shutil.which("chromium") is None:
            missing["browser"] = "chromium is not installed (apt-get install chromium)"
    if not torch.cuda.is_available():
        missing["gpu"] = "no CUDA device"
    return missing


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing()
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


torch.set_num_threads(2)
