"""Fixtures every test folder may ask for (a pytest plugin of tests/conftest.py): the synthetic
video, small checkpoints, and the real servers, all of them started by one ``server_factory``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tdmi.model.checkpoint import save_checkpoint
from tdmi.model.presets import build_model
from tests.helpers.server import SMALL_LIMITS, ServerFactory, ServerProcess
from tests.helpers.synth import SynthVideo, make_synth_video
from tests.helpers.weights import randomize

__all__ = ["SERVER_ENV"]

# the shared server: ``tdmi serve`` as users start it (the demo tdmi-tiny checkpoint on the CPU),
# with the small limits and the detector every installation has
SERVER_ENV = {**SMALL_LIMITS, "TDMI_DETECTOR": "hog"}


@pytest.fixture(scope="session")
def synth_video(tmp_path_factory: pytest.TempPathFactory) -> SynthVideo:
    return make_synth_video(tmp_path_factory.mktemp("synth"), frames=16, seed=7)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tdmi-tiny checkpoint with random (not trained) weights: exercises loading, not accuracy."""
    path = tmp_path_factory.mktemp("weights") / "tdmi-tiny-random.pt"
    save_checkpoint(randomize(build_model("tdmi-tiny")), path, "tdmi-tiny", note="random weights for tests")
    return path


@pytest.fixture(scope="session")
def official_hrnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file in the official HRNet release's form: a bare state dict under the official key names."""
    path = tmp_path_factory.mktemp("weights") / "pose_hrnet_w32_256x192.pth"
    torch.save(randomize(build_model("hrnet-w32-256x192")).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """The one source of shared real servers: each configuration starts once per session."""
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def server(server_factory: ServerFactory) -> ServerProcess:
    """The shared real server (``SERVER_ENV``), for end-to-end tests that leave it running."""
    return server_factory.get(env=SERVER_ENV)
