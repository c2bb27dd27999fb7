"""The SDK without its ``media`` extra: jobs, models, status and camera sources (the server reads
the camera) work against the service, and
every video, camera and drawing feature fails with one line that names the extra to install.

The client runs in a subprocess where OpenCV, PyAV and torch cannot be imported (``None`` in
``sys.modules`` is how Python marks a module that must not load). ``test_sdk_wheel.py`` does the
same in a clean virtual environment where none of them is installed at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tdmi.client.cli import EXIT_CODES
from tests.clients.conftest import ADMIN_KEY, API_KEY, CAMERA_URL, SynthVideo
from tests.helpers.in_process import ServedApp

HINT = "pip install 'tdmi-client[media]' (in a checkout of the project: pip install './clients[media]')"
_WITHOUT_MEDIA = "import sys\nfor name in ('cv2', 'av', 'torch'):\n    sys.modules[name] = None\n"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_MEDIA + code, *args], capture_output=True, text=True, timeout=300
    )


def _cli(service: ServedApp, *args: str) -> subprocess.CompletedProcess[str]:
    code = "from tdmi.client.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return _python(code, "--url", service.base, "--api-key", API_KEY, *args)


def test_models_a_job_and_its_status_need_no_media(
    service: ServedApp, synth_video: SynthVideo, tmp_path: Path
) -> None:
    models = _cli(service, "models", "--json")
    assert models.returncode == 0, models.stderr
    assert [m["name"] for m in json.loads(models.stdout)] == ["tdmi-tiny"]
    out = tmp_path / "result.json"
    pose = _cli(service, "pose", str(synth_video.path), "--out", str(out), "--quiet")
    assert pose.returncode == 0, pose.stderr
    result = json.loads(out.read_text())
    assert [f["index"] for f in result["frames"]] == list(range(synth_video.frames))
    status = _cli(service, "status", result["job_id"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "done"


def test_camera_sources_need_no_media(camera_service: ServedApp) -> None:
    code = """
from tdmi.client import PoseClient

with PoseClient(sys.argv[1], api_key=sys.argv[2]) as client:
    source_id = client.sources.add(sys.argv[3]).source_id
    watch = client.sources.watch(source_id)
    kinds = [next(watch).type]
    while kinds[-1] != "result":  # the status now, then a change (connecting -> live) or a result
        kinds.append(next(watch).type)
    watch.close()
    print(kinds[0], kinds[-1])
    print(client.sources.remove(source_id).status)
"""
    done = _python(code, camera_service.base, ADMIN_KEY, CAMERA_URL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["status result", "stopped"]


@pytest.mark.parametrize(
    ("extra_args", "needs"),
    [
        (["VIDEO"], "VIDEO needs PyAV"),
        (["0"], "camera 0 needs OpenCV"),
        (["rtsp://127.0.0.1:9/live"], "rtsp://127.0.0.1:9/live needs OpenCV"),
        (["VIDEO", "--render", "OUT"], "writing an MP4 needs PyAV"),
    ],
)
def test_media_features_of_the_command_name_the_extra(
    service: ServedApp, synth_video: SynthVideo, tmp_path: Path, extra_args: list[str], needs: str
) -> None:
    names = {"VIDEO": str(synth_video.path), "OUT": str(tmp_path / "live.mp4")}
    done = _cli(service, "stream", *(names.get(a, a) for a in extra_args))
    assert done.returncode == EXIT_CODES["bad_input"]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert (
        lines[0] == f"tdmi-client: {needs.replace('VIDEO', names['VIDEO'])}, which is not installed: {HINT}"
    )


def test_media_features_of_the_sdk_raise_media_unavailable(service: ServedApp) -> None:
    code = """
import numpy as np
from tdmi.client import MediaUnavailable, PoseClient
from tdmi.protocol.overlay import draw_poses

image = np.zeros((16, 16, 3), np.uint8)
with PoseClient(sys.argv[1], api_key=sys.argv[2]) as client:
    try:
        next(iter(client.stream([image])))
    except MediaUnavailable as exc:
        print(exc)
try:
    draw_poses(image, [], [])
except MediaUnavailable as exc:
    print(exc)
"""
    done = _python(code, service.base, API_KEY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"a live stream (frames travel as JPEG) needs OpenCV, which is not installed: {HINT}",
        f"drawing poses needs OpenCV, which is not installed: {HINT}",
    ]
