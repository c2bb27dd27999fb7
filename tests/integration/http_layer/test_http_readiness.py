"""A node that is not ready (models loading, Redis away, shutting down) says why on ``/readyz``,
answers the API 503 with ``Retry-After``, and closes live streams with 1013; it stays alive."""

from __future__ import annotations

from pathlib import Path

from tdmi.service.main import build_worker_app
from tests.helpers.fake_node import FakeNode
from tests.helpers.in_process import StartApp, TestClient, fake_settings, until_closed
from tests.helpers.synth import SynthVideo


def test_not_ready_is_503_with_the_reason_until_ready(start_app: StartApp, synth_video: SynthVideo) -> None:
    client, node = start_app()
    node.readiness.set("loading models")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"status": "not ready", "reason": "loading models"}
    assert client.get("/healthz").status_code == 200  # alive: not to be restarted
    upload = client.post("/v1/pose", files={"file": ("v.mp4", synth_video.path.read_bytes())})
    for reply in (upload, client.get("/v1/workers"), client.get(f"/v1/pose/{'0' * 32}")):
        assert reply.status_code == 503 and reply.json() == {"error": "not_ready", "detail": "loading models"}
        assert reply.headers["retry-after"] == "1"
    (error,), code = until_closed(client)
    assert code == 1013 and (error["error"], error["detail"]) == ("not_ready", "loading models")

    node.readiness.set(None)
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/workers").status_code == 200


def test_the_worker_app_serves_its_probes_and_metrics_only(tmp_path: Path) -> None:
    node = FakeNode(fake_settings(tmp_path))
    with TestClient(build_worker_app(node), base_url="http://localhost") as client:
        assert client.get("/readyz").status_code == 200 and client.get("/healthz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "tdmi_active_streams" in metrics.text
        missing = client.get("/v1/models")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
