"""Every bad input of the README's table gets a clear 4xx and leaves the server serving."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.helpers.server import ServerProcess
from tests.integration.conftest import SynthVideo


def _post(server: ServerProcess, content: bytes, name: str = "v.mp4", **fields: str) -> httpx.Response:
    return httpx.post(f"{server.base}/v1/pose", files={"file": (name, content)}, data=fields, timeout=60)


def _audio_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _no_pictures() -> bytes:
    """A Matroska file with a video track whose only packet holds no picture."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        packet = av.Packet(b"\x00\x00\x00\x02\x09\xf0")  # one access-unit delimiter NAL
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, 0, 0, Fraction(1, 25)
        container.mux(packet)
    return buffer.getvalue()


def _video(width: int, height: int, frames: int = 2) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def video_bytes(synth_video: SynthVideo) -> bytes:
    return synth_video.path.read_bytes()


# (case, what to send given the good video's bytes: (file bytes, form fields), status, error kind)
CASES = [
    ("not a video", lambda v: (b"this is a text file, not a video" * 10, {}), 415, "unsupported_media"),
    ("truncated video", lambda v: (v[: len(v) // 2], {}), None, None),
    ("no video stream", lambda v: (_audio_only(), {}), 422, "no_video_stream"),
    ("zero frames", lambda v: (_no_pictures(), {}), 422, "no_frames"),
    ("huge resolution", lambda v: (_video(1280, 720), {}), 413, "too_large"),
    ("malformed boxes", lambda v: (v, {"boxes": "{not json"}), 422, "invalid_boxes"),
    (
        "boxes outside the frame",
        lambda v: (v, {"boxes": json.dumps({"0": [[500, 500, 600, 600]]})}),
        422,
        "invalid_boxes",
    ),
    (
        "box without area",
        lambda v: (v, {"boxes": json.dumps({"0": [[10, 10, 5, 50]]})}),
        422,
        "invalid_boxes",
    ),
    (
        "boxes for a frame the video lacks",
        lambda v: (v, {"boxes": json.dumps({"99": []})}),
        422,
        "invalid_boxes",
    ),
    ("unknown model", lambda v: (v, {"model": "hrnet-w99"}), 422, "unknown_model"),
    ("lookahead beyond d", lambda v: (v, {"lookahead": "7"}), 422, "invalid_request"),
    ("render not a boolean", lambda v: (v, {"render": "maybe"}), 422, "invalid_request"),
    ("upload over the size limit", lambda v: (b"\0" * 2_100_000, {}), 413, "too_large"),
]


@pytest.mark.parametrize(("case", "make", "status", "kind"), CASES, ids=[c[0] for c in CASES])
def test_bad_upload(server: ServerProcess, video_bytes: bytes, case: str, make, status, kind) -> None:
    content, fields = make(video_bytes)
    reply = _post(server, content, **fields)
    body = reply.json()
    if status is None:  # a truncated MP4 is unreadable (415) or broken (422), depending on the cut
        assert reply.status_code in (415, 422)
    else:
        assert reply.status_code == status, body
    if kind is not None:
        assert body["error"] == kind
    assert isinstance(body["detail"], str) and body["detail"]
    assert httpx.get(f"{server.base}/readyz").status_code == 200  # still serving


def test_not_multipart_and_wait_limits(server: ServerProcess, video_bytes: bytes, tmp_path: Path) -> None:
    reply = httpx.post(f"{server.base}/v1/pose", content=video_bytes, headers={"content-type": "video/mp4"})
    assert reply.status_code == 415 and "multipart" in reply.json()["detail"]
    long_video = _video(64, 48, frames=50)  # the test server allows ?wait=true up to 40 frames
    reply = httpx.post(
        f"{server.base}/v1/pose", params={"wait": "true"}, files={"file": ("v.mp4", long_video)}
    )
    assert reply.status_code == 422 and reply.json()["error"] == "too_long_to_wait"
    reply = httpx.get(f"{server.base}/v1/pose/{'0' * 32}/result", params={"format": "xml"})
    assert reply.status_code in (404, 422)
