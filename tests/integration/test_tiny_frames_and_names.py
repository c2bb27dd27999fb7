"""Frames smaller than the HOG window (the default detector) used to kill the server: a 2x2 video
job, 1x1 and 64x64 JPEGs on the live WebSocket. Each must leave it serving. And an upload's error
names the user's file, not the job id it is stored under."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from tdmi.protocol.stream import pack_frame
from tests.helpers.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    """tdmi-tiny alone, with the default detector (HOG) run on every frame."""
    env = {"TDMI_DETECT_EVERY": "1", "TDMI_DETECTOR": "hog", "TDMI_STALENESS_MS": "600000"}
    proc = ServerProcess(tmp_path_factory.mktemp("data"), "--model", f"tdmi-tiny={tiny_checkpoint}", env=env)
    proc.wait_ready(timeout=600)
    yield proc
    proc.stop()


def _tiny_video(width: int, height: int, frames: int = 3) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=10)  # lossless, any size down to 1x1
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for _ in range(frames):
            image = np.full((height, width, 3), 90, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _alive(server: ServerProcess) -> None:
    assert server.proc.poll() is None, server.log()[-3000:]
    assert httpx.get(f"{server.base}/readyz", timeout=10).status_code == 200


def test_a_2x2_video_job_runs_the_detector_and_the_server_lives(server: ServerProcess) -> None:
    reply = httpx.post(
        f"{server.base}/v1/pose",
        params={"wait": "true"},
        files={"file": ("tiny.mkv", _tiny_video(2, 2))},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    frames = reply.json()["frames"]
    assert len(frames) == 3 and all(frame["persons"] == [] for frame in frames)
    _alive(server)


def test_1x1_and_64x64_jpegs_on_the_websocket_leave_the_server_alive(server: ServerProcess) -> None:
    with connect(f"{server.ws_base}/v1/stream") as ws:
        ws.send(json.dumps({"type": "config", "lookahead": 0}))  # the server's detector: HOG
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for frame_id, side in enumerate((1, 64, 1)):
            jpeg = cv2.imencode(".jpg", np.full((side, side, 3), 90, np.uint8))[1].tobytes()
            ws.send(pack_frame(jpeg, frame_id, 0.0))
            result = json.loads(ws.recv(timeout=60))
            assert result["type"] == "result" and result["frame_id"] == frame_id, result
            assert result["persons"] == []
    _alive(server)


def test_an_error_names_the_users_file_not_the_upload_id(server: ServerProcess) -> None:
    junk = b"this is a text file, not a video" * 10
    reply = httpx.post(f"{server.base}/v1/pose", files={"file": ("holiday.mp4", junk)}, timeout=60)
    assert reply.status_code == 415
    detail = reply.json()["detail"]
    assert detail.startswith("holiday.mp4: ") and not re.search("[0-9a-f]{32}", detail)  # no job id
