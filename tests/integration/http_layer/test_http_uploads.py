"""Every bad upload of the table in docs/security.md gets a clear 4xx, and the service goes on serving.

The upload is parsed, limited and probed for real (PyAV); only the poses are the fake node's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers.in_process import StartApp, TestClient
from tests.helpers.media import audio_only, encode_video, no_pictures, png
from tests.helpers.synth import SynthVideo

MAX_UPLOAD_BYTES = 2_000_000


def _video(width: int, height: int, frames: int = 2) -> bytes:
    return encode_video([np.zeros((height, width, 3), np.uint8)] * frames)


@pytest.fixture
def small(start_app: StartApp) -> TestClient:
    """Small limits, so that the limit tests stay small."""
    client, _ = start_app(max_upload_bytes=MAX_UPLOAD_BYTES, max_video_pixels=640 * 480, wait_max_frames=40)
    return client


@pytest.fixture(scope="module")
def video_bytes(synth_video: SynthVideo) -> bytes:
    return synth_video.path.read_bytes()


Make = Callable[[bytes], tuple[bytes, dict[str, str]]]
# (case, what to send given the good video's bytes: (file bytes, form fields), status, error kind)
CASES: list[tuple[str, Make, int | None, str | None]] = [
    ("not a video", lambda v: (b"this is a text file, not a video" * 10, {}), 415, "unsupported_media"),
    ("truncated video", lambda v: (v[: len(v) // 2], {}), None, None),
    ("no video stream", lambda v: (audio_only(), {}), 422, "no_video_stream"),
    ("zero frames", lambda v: (no_pictures(), {}), 422, "no_frames"),
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
    ("upload over the size limit", lambda v: (b"\0" * (MAX_UPLOAD_BYTES + 100_000), {}), 413, "too_large"),
    ("a still image", lambda v: (png(), {}), 415, "unsupported_media"),
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
def test_bad_upload(
    small: TestClient, video_bytes: bytes, case: str, make: Make, status: int | None, kind: str | None
) -> None:
    content, fields = make(video_bytes)
    reply = small.post("/v1/pose", files={"file": ("v.mp4", content)}, data=fields)
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
    assert small.get("/readyz").status_code == 200  # still serving


def test_a_refused_upload_leaves_no_file(start_app: StartApp) -> None:
    client, node = start_app()
    assert client.post("/v1/pose", files={"file": ("v.mp4", b"not a video" * 30)}).status_code == 415
    assert not list((node.settings.data_dir / "uploads").iterdir())


def test_not_multipart_and_wait_limits(small: TestClient, video_bytes: bytes) -> None:
    reply = small.post("/v1/pose", content=video_bytes, headers={"content-type": "video/mp4"})
    assert reply.status_code == 415 and "multipart" in reply.json()["detail"]
    long_video = _video(64, 48, frames=50)  # ?wait=true is for videos up to 40 frames here
    reply = small.post("/v1/pose", params={"wait": "true"}, files={"file": ("v.mp4", long_video)})
    assert reply.status_code == 422 and reply.json()["error"] == "too_long_to_wait"


def _parts(client: TestClient, parts: list[tuple[str, tuple[Any, ...]]]) -> httpx.Response:
    return client.post("/v1/pose", files=parts)


def test_multipart_totals_are_limited(small: TestClient, video_bytes: bytes) -> None:
    """Fields of 400 KB each pass one by one, not together; a field given twice is refused."""
    big = [(name, (None, b"x" * 400_000)) for name in ("model", "boxes", "lookahead")]
    reply = _parts(small, [("file", ("v.mp4", video_bytes)), *big])
    assert reply.status_code == 413 and reply.json()["error"] == "too_large"
    assert "in all" in reply.json()["detail"]
    headers = [("file", ("v.mp4", video_bytes, "video/mp4", {"X-Padding": "x" * 20_000}))]
    reply = _parts(small, headers)  # a part's header line: 16 KB at most
    assert reply.status_code == 422 and "16384 bytes" in reply.json()["detail"]
    twice = [("file", ("v.mp4", video_bytes)), ("render", (None, b"true")), ("render", (None, b"false"))]
    reply = _parts(small, twice)
    assert reply.status_code == 422 and "twice" in reply.json()["detail"]
    no_file = [("render", (None, b"true"))]
    reply = _parts(small, no_file)
    assert reply.status_code == 422 and "'file'" in reply.json()["detail"]
    assert small.get("/readyz").status_code == 200


def test_an_error_names_the_users_file_not_the_upload_id(client: TestClient) -> None:
    junk = b"this is a text file, not a video" * 10
    reply = client.post("/v1/pose", files={"file": ("holiday.mp4", junk)})
    assert reply.status_code == 415
    detail = reply.json()["detail"]
    assert detail.startswith("holiday.mp4: ") and not re.search("[0-9a-f]{32}", detail)  # no job id
