"""Test-wide settings: deterministic torch on few threads (CI has two cores), and the markers.

Tests that need a system part carry its marker: ``redis`` (Debian's redis-server), ``browser``
(Debian's chromium), ``camera`` (GStreamer's RTSP server for the system Python), ``gpu`` (a CUDA
device). Where that part is missing they are skipped with the package to install, except under CI
(``CI`` set), whose .ci/run installs all but the GPU: there a missing one fails its tests.
``slow`` marks the long tests, so that ``-m "not slow"`` is a quick selection while developing.

Where a folder or a fixture decides a marker, the test carries it without saying so (``FOLDER_MARKERS``,
``FIXTURE_MARKERS``; tests/test_markers.py checks both): every test under tests/training is ``slow``,
a test that asks for ``redis_server`` is a ``redis`` test, one that asks for a ``camera`` a
``camera`` test. Elsewhere a test names its markers.

The servers the tests start run the torch backend: the default on a CPU (``auto``, ONNX Runtime)
exports the model once per data directory, 10-20 s that every test's fresh server would pay.
``test_default_backend.py`` starts the default itself.
"""

import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers.cameras import PACKAGES as CAMERA_PACKAGES
from tests.helpers.cameras import rtsp_server_available

os.environ.setdefault("TDMI_BACKEND", "torch")  # inherited by the servers started as subprocesses

# the synthetic video, checkpoints and the shared real servers, for every test folder
pytest_plugins = ["tests.helpers.shared_fixtures"]

TESTS = Path(__file__).parent
FOLDER_MARKERS = {"training": "slow"}  # folder below tests/ -> the marker of every test in it
FIXTURE_MARKERS = {"redis_server": "redis", "camera": "camera"}  # fixture -> the marker of its tests


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def synth_posetrack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short synthetic videos per split, made by ``tdmi synth``: for training and prediction runs."""
    from tdmi.service.cli import main  # here, not at the top: most test sessions never ask for it

    root = tmp_path_factory.mktemp("synth")
    for split, seed in (("train", 0), ("val", 1)):
        args = ["synth", "--out", str(root), "--videos", "2", "--seed", str(seed), "--split", split]
        assert main([*args, "--frames", "8", "--size", "160x120"]) == 0
    return root


def _missing() -> dict[str, str]:
    """Marker -> why its tests cannot run on this machine."""
    missing = {}
    if not os.environ.get("CI"):  # CI installs both: there a missing one fails its tests
        if shutil.which("redis-server") is None:
            missing["redis"] = "redis-server is not installed (apt-get install redis-server)"
        if shutil.which("chromium") is None:
            missing["browser"] = "chromium is not installed (apt-get install chromium)"
        if not rtsp_server_available():
            missing["camera"] = (
                f"GStreamer's RTSP server is not installed (apt-get install {CAMERA_PACKAGES})"
            )
    if not torch.cuda.is_available():
        missing["gpu"] = "no CUDA device"
    return missing


def _implied_markers(item: pytest.Item) -> set[str]:
    """The markers that ``item``'s folder and fixtures decide."""
    folders = {m for folder, m in FOLDER_MARKERS.items() if item.path.is_relative_to(TESTS / folder)}
    fixtures = {m for name, m in FIXTURE_MARKERS.items() if name in getattr(item, "fixturenames", ())}
    return folders | fixtures


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing()
    for item in items:
        for marker in _implied_markers(item):
            item.add_marker(marker)
        for marker, reason in missing.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


torch.set_num_threads(2)
