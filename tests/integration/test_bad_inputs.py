"""Bad input that only the real job runner meets: frames whose size changes midway, frames smaller
than the detector's window, and schema fuzzing of every operation, on the shared real server.

What the upload itself does wrong (the table in docs/security.md) is answered before any job runs: those
cases are tested in-process (tests/integration/http_layer/test_http_uploads.py).
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import av
import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.helpers.media import encode_video, size_switch
from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.slow  # each test runs jobs on the real models


def _video(width: int, height: int, frames: int = 2) -> bytes:
    return encode_video([np.zeros((height, width, 3), np.uint8)] * frames)


def test_resolution_change_above_the_limit_fails_the_job_as_too_large(server: ServerProcess) -> None:
    """The header says 160x160; frames of 800x800 follow (the test server allows 640x480 pixels)."""
    video = size_switch((160, 160), (800, 800), frames=10)  # the upload's probe reads a few packets only
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
    video = size_switch((160, 160), (320, 240))
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


def _contract(response: Any) -> None:
    """No 5xx; every error is JSON ``{"error", "detail"}`` with a request id."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"}, body
        assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    assert response.headers.get("x-request-id")


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
