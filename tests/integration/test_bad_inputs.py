"""Every bad input of the README's table gets a clear 4xx and leaves the server serving.

Video-job cases here; the live WebSocket's are in test_bad_stream_inputs.py.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.helpers.server import ServerProcess
from tests.integration.conftest import SMALL_LIMITS, SynthVideo


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


def _mpegts(width: int, height: int, frames: int, start: int = 0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 120, np.uint8), format="rgb24")
            frame.pts = start + i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _switching(first: tuple[int, int], then: tuple[int, int], frames: int = 3) -> bytes:
    """An MPEG-TS stream whose resolution changes midway (two streams back to back, as a broadcast)."""
    return _mpegts(*first, frames) + _mpegts(*then, frames, start=frames)


def _png() -> bytes:
    return cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()


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
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    """A light server (tdmi-tiny alone) with the small test limits: bad input needs no second model."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("data"), "--model", f"tdmi-tiny={tiny_checkpoint}", env=SMALL_LIMITS
    )
    proc.wait_ready()
    yield proc
    proc.stop()


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
    ("a still image", lambda v: (_png(), {}), 415, "unsupported_media"),
    ("lookahead in Unicode digits", lambda v: (v, {"lookahead": "²"}), 422, "invalid_request"),
    ("lookahead thousands of digits long", lambda v: (v, {"lookahead": "9" * 5000}), 422, "invalid_request"),
    ("render empty is false", lambda v: (v, {"render": ""}), 202, None),
    ("model name too long", lambda v: (v, {"model": "m" * 5000}), 422, "invalid_request"),
    ("boxes keyed in Unicode digits", lambda v: (v, {"boxes": '{"²": []}'}), 422, "invalid_boxes"),
    (
        "boxes key thousands of digits long",
        lambda v: (v, {"boxes": f'{{"{"9" * 5000}": []}}'}),
        422,
        "invalid_boxes",
    ),
    ("boxes nested 50,000 deep", lambda v: (v, {"boxes": "[" * 50_000 + "]" * 50_000}), 422, "invalid_boxes"),
    (
        "a box number thousands of digits long",
        lambda v: (v, {"boxes": '{"0": [[' + "1" * 5000 + ", 0, 1, 1]]}"}),
        422,
        "invalid_boxes",
    ),
    (
        "a box number that overflows",
        lambda v: (v, {"boxes": '{"0": [[1e999, 0, 10, 10]]}'}),
        422,
        "invalid_boxes",
    ),
    ("a box holding a string", lambda v: (v, {"boxes": '{"0": [[0, 0, "9", 9]]}'}), 422, "invalid_boxes"),
    ("boxes a JSON list", lambda v: (v, {"boxes": "[]"}), 422, "invalid_boxes"),
    ("an unknown form field", lambda v: (v, {"color": "red"}), 422, "invalid_request"),
    ("300 form fields", lambda v: (v, {f"f{i}": "x" * 1000 for i in range(300)}), 422, "invalid_request"),
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
    if reply.status_code >= 400:
        assert set(body) == {"error", "detail"} and reply.headers["content-type"] == "application/json"
        assert isinstance(body["detail"], str) and body["detail"] and len(body["detail"]) < 500
    if kind is not None:
        assert body["error"] == kind
    assert reply.headers["x-request-id"]
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


def _post_parts(server: ServerProcess, parts: list[tuple[str, tuple[Any, ...]]]) -> httpx.Response:
    return httpx.post(f"{server.base}/v1/pose", files=parts, timeout=60)


def test_multipart_totals_are_limited(server: ServerProcess, video_bytes: bytes) -> None:
    """Fields of 400 KB each pass one by one, not together; a field given twice is refused."""
    big = [(name, (None, b"x" * 400_000)) for name in ("model", "boxes", "lookahead")]
    reply = _post_parts(server, [("file", ("v.mp4", video_bytes)), *big])
    assert reply.status_code == 413 and reply.json()["error"] == "too_large"
    assert "in all" in reply.json()["detail"]
    headers = [("file", ("v.mp4", video_bytes, "video/mp4", {"X-Padding": "x" * 20_000}))]
    reply = _post_parts(server, headers)  # a part's header line: 16 KB at most
    assert reply.status_code == 422 and "16384 bytes" in reply.json()["detail"]
    twice = [("file", ("v.mp4", video_bytes)), ("render", (None, b"true")), ("render", (None, b"false"))]
    reply = _post_parts(server, twice)
    assert reply.status_code == 422 and "twice" in reply.json()["detail"]
    assert httpx.get(f"{server.base}/readyz").status_code == 200


def test_resolution_change_above_the_limit_fails_the_job_as_too_large(server: ServerProcess) -> None:
    """The header says 160x160; frames of 800x800 follow (the test server allows 640x480 pixels)."""
    video = _switching((160, 160), (800, 800), frames=10)  # the upload's probe reads a few packets only
    reply = httpx.post(
        f"{server.base}/v1/pose", params={"wait": "true"}, files={"file": ("v.ts", video)}, timeout=120
    )
    assert reply.status_code == 422 and reply.json()["error"] == "job_failed"
    assert "800x800 exceed the limit" in reply.json()["detail"]
    reply = httpx.post(f"{server.base}/v1/pose", files={"file": ("v.ts", video)}, data={"render": "true"})
    assert reply.status_code == 202
    status = _finished(server, reply.json()["job_id"])
    assert status["status"] == "failed" and "800x800 exceed the limit" in status["error"]


def test_resolution_change_within_the_limit_renders(server: ServerProcess) -> None:
    """Frames of another size inside the limit: poses in each frame's own pixels, the overlay scaled."""
    video = _switching((160, 160), (320, 240))
    reply = httpx.post(
        f"{server.base}/v1/pose",
        params={"wait": "true"},
        files={"file": ("v.ts", video)},
        data={"render": "true"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["frames"]) == 6
    overlay = httpx.get(reply.json()["job_id"].join((f"{server.base}/v1/pose/", "/video")), timeout=60)
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(overlay.content)) as container:
        sizes = {(f.width, f.height) for f in container.decode(video=0)}
    assert sizes == {(160, 160)}


def _finished(server: ServerProcess, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.base}/v1/pose/{job_id}").json()
        if status["status"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished within {timeout} s")


def test_every_http_error_is_json_with_a_request_id(server: ServerProcess) -> None:
    cases = [
        ("GET", "/no/such/route", {}, 404, "not_found"),
        ("PUT", "/v1/pose", {}, 405, "method_not_allowed"),
        ("POST", "/v1/pose?wait=maybe", {}, 422, "invalid_request"),
        ("GET", f"/v1/pose/{'0' * 32}/result?format=xml", {}, 422, "invalid_request"),
        ("GET", f"/v1/pose/{'0' * 32}", {}, 404, "not_found"),
        ("GET", "/v1/pose/" + "x" * 5000, {}, 404, "not_found"),
    ]
    for method, path, headers, status, kind in cases:
        reply = httpx.request(method, f"{server.base}{path}", headers=headers, timeout=30)
        assert reply.status_code == status, (path, reply.text)
        assert reply.json()["error"] == kind and set(reply.json()) == {"error", "detail"}
        assert len(reply.headers["x-request-id"]) == 32
    reply = httpx.get(f"{server.base}/readyz", headers={"X-Request-ID": "trace-42"})
    assert reply.headers["x-request-id"] == "trace-42"  # a client's own id is echoed
    reply = httpx.get(f"{server.base}/readyz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert reply.headers["x-request-id"] != "bad id\twith spaces"


def test_an_internal_fault_is_a_json_500_with_the_request_id_in_the_log(
    server: ServerProcess, video_bytes: bytes
) -> None:
    """A job's result file lost from the data directory: our fault, not the client's."""
    reply = httpx.post(
        f"{server.base}/v1/pose", params={"wait": "true"}, files={"file": ("v.mp4", video_bytes)}, timeout=120
    )
    job_id = reply.json()["job_id"]
    (result_file,) = server.data_dir.rglob(f"{job_id}*.json")
    result_file.unlink()
    reply = httpx.get(f"{server.base}/v1/pose/{job_id}/result")
    assert reply.status_code == 500
    body = reply.json()
    request_id = reply.headers["x-request-id"]
    assert body["error"] == "internal" and request_id in body["detail"]
    assert str(server.data_dir) not in body["detail"] and "Traceback" not in body["detail"]
    assert f"request id {request_id}" in server.log() and "FileNotFoundError" in server.log()
    assert httpx.get(f"{server.base}/readyz").status_code == 200


def _contract(response: Any) -> None:
    """No 5xx; every error is JSON ``{"error", "detail"}`` with a request id."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"}, body
        assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    assert response.headers.get("x-request-id")


@pytest.mark.slow
def test_openapi_fuzzing(server: ServerProcess) -> None:
    """schemathesis: valid and invalid requests of every operation of the server's own schema."""
    schema = schemathesis.openapi.from_url(f"{server.base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=12,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                _contract(case.call(base_url=server.base, timeout=60))

            try:
                fuzz()
            except Unsatisfiable:  # an operation without inputs has no invalid request to make
                assert mode == GenerationMode.NEGATIVE
    assert httpx.get(f"{server.base}/readyz").status_code == 200


def test_tiny_frames_as_video_jobs(server: ServerProcess) -> None:
    """1x1, 2x2 and 64x64 videos run to the end, with the detector and with client boxes, rendered
    (last in the module: before the detector's guard, this killed the server)."""
    for width, height in ((1, 1), (2, 2), (64, 64)):
        video = _video(width, height, frames=3)
        for fields in ({}, {"boxes": json.dumps({str(i): [[0, 0, width, height]] for i in range(3)})}):
            reply = httpx.post(
                f"{server.base}/v1/pose",
                params={"wait": "true"},
                files={"file": ("v.mp4", video)},
                data={**fields, "render": "true"},
                timeout=120,
            )
            assert reply.status_code == 200, reply.text
            result = reply.json()
            assert result["video"]["width"] == width and len(result["frames"]) == 3
            if fields:
                assert all(len(frame["persons"]) == 1 for frame in result["frames"])
    assert httpx.get(f"{server.base}/readyz").status_code == 200
