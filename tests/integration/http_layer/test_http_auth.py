"""API keys on HTTP and the WebSocket alike, and jobs that belong to the key that created them."""

from __future__ import annotations

import json

import pytest

from tests.helpers.in_process import STREAM_URL, StartApp, TestClient, receive_until, until_closed
from tests.helpers.synth import SynthVideo

KEY, OTHER, ADMIN = "s3cret", "another-key", "admin-key"


@pytest.fixture
def keyed(start_app: StartApp) -> TestClient:
    """A service with two keys and an admin key; jobs stay queued (nothing runs them)."""
    return start_app(jobs_run=False, api_keys=[KEY, OTHER], admin_api_keys=[ADMIN])[0]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _submit(client: TestClient, video: SynthVideo, headers: dict[str, str]) -> str:
    reply = client.post("/v1/pose", files={"file": ("v.mp4", video.path.read_bytes())}, headers=headers)
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def test_the_api_wants_a_key_and_the_probes_do_not(keyed: TestClient, synth_video: SynthVideo) -> None:
    video = {"file": ("v.mp4", synth_video.path.read_bytes())}
    refused = keyed.post("/v1/pose", files=video)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorised"
    assert refused.headers["www-authenticate"] == "Bearer"
    assert keyed.post("/v1/pose", files=video, headers=_bearer("wrong")).status_code == 401
    assert keyed.get("/v1/models").status_code == 401
    assert keyed.get("/v1/workers").status_code == 401
    assert keyed.post("/v1/pose", files=video, headers=_bearer(KEY)).status_code == 202
    assert keyed.post("/v1/pose", files=video, headers={"X-API-Key": KEY}).status_code == 202
    for probe in ("/healthz", "/readyz", "/metrics", "/"):
        assert keyed.get(probe).status_code == 200, probe


def test_a_websocket_without_the_key_is_closed_with_1008(keyed: TestClient) -> None:
    assert until_closed(keyed)[1] == 1008
    assert until_closed(keyed, Authorization="Bearer wrong")[1] == 1008
    for url, headers in ((f"{STREAM_URL}?api_key={KEY}", {}), (STREAM_URL, {"X-API-Key": OTHER})):
        with keyed.websocket_connect(url, headers=headers) as ws:
            ws.send_text(json.dumps({"type": "config"}))
            assert receive_until(ws, "ready")[-1]["type"] == "ready"


def test_a_job_is_seen_only_by_its_key_and_the_admin_keys(keyed: TestClient, synth_video: SynthVideo) -> None:
    job = _submit(keyed, synth_video, _bearer(KEY))
    mine = keyed.get(f"/v1/pose/{job}", headers=_bearer(KEY))
    assert mine.status_code == 200 and mine.json()["status"] == "queued"
    for path in (f"/v1/pose/{job}", f"/v1/pose/{job}/result", f"/v1/pose/{job}/video"):
        theirs = keyed.get(path, headers=_bearer(OTHER))  # answered as an unknown job: nothing leaks
        assert theirs.status_code == 404 and theirs.json()["error"] == "not_found", path
    assert keyed.delete(f"/v1/pose/{job}", headers=_bearer(OTHER)).status_code == 404
    assert keyed.get(f"/v1/pose/{job}", headers=_bearer(ADMIN)).status_code == 200
    cancelled = keyed.delete(f"/v1/pose/{job}", headers=_bearer(ADMIN))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert keyed.get(f"/v1/pose/{job}", headers=_bearer(KEY)).status_code == 404


def test_without_keys_everyone_is_the_same_caller(client: TestClient, synth_video: SynthVideo) -> None:
    job = _submit(client, synth_video, {})
    assert client.get(f"/v1/pose/{job}", headers=_bearer("anything")).status_code == 200
