"""Fixtures of the client tests: the service around a fake node on a loopback port (the SDK and
its command line talk to it over real HTTP and WebSocket, quickly: no model), a real server for
the browser page, the person video, helpers.

The SDK's end-to-end test against a real server uses the shared one (``server``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tdmi.model.data.synth.render import render_frame
from tdmi.model.data.synth.scene import SceneSpec, sample_scene
from tests.helpers.fake_node import FakeNode
from tests.helpers.in_process import ServedApp, fake_settings, serving
from tests.helpers.server import ServerFactory, ServerProcess, free_port
from tests.helpers.synth import SynthVideo

__all__ = ["ADMIN_KEY", "API_KEY", "CAMERA_URL", "SynthVideo"]

API_KEY = "client-test-key"
ADMIN_KEY = "client-test-admin-key"
CAMERA_URL = "rtsp://192.168.1.20:554/stream"  # a private address: allowed by default, never dialled
MAX_SOURCES = 2
MAX_UPLOAD_BYTES = 2_000_000
# A synthetic scene whose one figure OpenCV's HOG people detector (the server's default, made
# for photographs of pedestrians) finds in every frame, measured: most synthetic figures it
# misses, and a live stream without client boxes relies on it.
PERSON_SCENE = SceneSpec(width=320, height=240, fps=25.0, num_frames=30, min_persons=1, max_persons=2)
PERSON_SEED = 17


@pytest.fixture(scope="session")
def person_frames() -> list[np.ndarray]:
    """The scene's frames, RGB uint8."""
    scene = sample_scene(np.random.default_rng([PERSON_SEED, 0]), PERSON_SCENE)
    return [
        np.ascontiguousarray(render_frame(scene, t).image[:, :, ::-1]) for t in range(PERSON_SCENE.num_frames)
    ]


@pytest.fixture(scope="session")
def person_video(tmp_path_factory: pytest.TempPathFactory, person_frames: list[np.ndarray]) -> Path:
    """The scene as an MP4 (MPEG-4 Part 2 at a high bit rate: near lossless for the detector)."""
    path = tmp_path_factory.mktemp("person") / "person.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = PERSON_SCENE.width, PERSON_SCENE.height, "yuv420p"
        stream.bit_rate = 8_000_000
        for image in person_frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@contextmanager
def _fake_service(data_dir: Path, jobs_run: bool) -> Iterator[ServedApp]:
    settings = fake_settings(data_dir, api_keys=[API_KEY], max_upload_bytes=MAX_UPLOAD_BYTES)
    with serving(FakeNode(settings, jobs_run=jobs_run)) as served:
        yield served


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The service behind an API key, around a fake node whose jobs run as they come."""
    with _fake_service(tmp_path_factory.mktemp("service"), jobs_run=True) as served:
        yield served


@pytest.fixture
def holding_service(tmp_path: Path) -> Iterator[ServedApp]:
    """The same, whose jobs stay queued until ``holding_service.node.run_jobs()``."""
    with _fake_service(tmp_path, jobs_run=False) as served:
        yield served


@pytest.fixture
def camera_service(tmp_path: Path) -> Iterator[ServedApp]:
    """The service around a fresh fake node whose cameras are ``FakeCamera`` (numbered grey frames,
    live at once, one fake person each): ``ADMIN_KEY`` adds sources, ``API_KEY`` may not, at most
    ``MAX_SOURCES`` at once."""
    settings = fake_settings(
        tmp_path, api_keys=[API_KEY], admin_api_keys=[ADMIN_KEY], max_sources=MAX_SOURCES
    )
    with serving(FakeNode(settings)) as served:
        yield served


@pytest.fixture(scope="session")
def demo_server(server_factory: ServerFactory) -> ServerProcess:
    """``tdmi serve`` as a user starts it (the demo tdmi-tiny checkpoint, HOG detector, CPU) behind
    an API key; the detector runs on every frame (no propagation between detections, so every
    frame of ``person_frames`` shows its figure)."""
    env = {
        "TDMI_API_KEYS": f'["{API_KEY}"]',
        "TDMI_DETECTOR": "hog",
        "TDMI_DETECT_EVERY": "1",
        "TDMI_MAX_RUNNING_JOBS": "1",
        "TDMI_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "TDMI_STALENESS_MS": "60000",  # a 2-core CI machine is slow: no live drops in these tests
    }
    return server_factory.get(env=env)


@pytest.fixture()
def not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"this is text, not a video\n" * 40)
    return path


@pytest.fixture()
def dead_url() -> str:
    """A loopback port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"
