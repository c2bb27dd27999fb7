"""``/v1/sources`` as clients use it, in-process against a fake node whose cameras are
``FakeCamera`` (tests/helpers/fake_node.py): the real routes, ``SourceService``, URL policy,
viewers and overlay, with fake poses. Real cameras on a real server: tests/integration/sources."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.fake_node import FAKE_CAMERA_SIZE, FakeNode
from tests.helpers.in_process import StartApp, TestClient, fake_settings, serving, until_closed
from tests.helpers.mjpeg import mjpeg_parts
from tests.helpers.waits import until

CAMERA = "rtsp://192.168.1.20:554/stream"  # a private address: allowed by default, never dialled
SECRET = "s3cr3t-pa55"
ADMIN, ALICE, BOB = "admin-key-0123456789", "alice-key-0123456789", "bob-key-0123456789"
KEYS: dict[str, Any] = {"api_keys": [ALICE, BOB], "admin_api_keys": [ADMIN]}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _add(client: TestClient, key: str | None = None, **body: Any) -> httpx.Response:
    headers = _auth(key) if key else {}
    return client.post("/v1/sources", json={"url": CAMERA, **body}, headers=headers)


def _processed(client: TestClient, source_id: str, at_least: int, **headers: str) -> dict[str, Any]:
    def info() -> dict[str, Any]:
        return client.get(f"/v1/sources/{source_id}", headers=headers).json()

    until(lambda: info()["frames_processed"] >= at_least, f"{at_least} frames processed", timeout=30)
    return info()


def test_a_source_is_added_runs_is_listed_and_deleted(client: TestClient) -> None:
    reply = _add(client, lookahead=0)
    assert reply.status_code == 201, reply.text
    created = reply.json()
    source_id, links = created["source_id"], created["links"]
    assert reply.headers["location"] == links["self"] == f"http://localhost/v1/sources/{source_id}"
    assert links["results"] == f"ws://localhost/v1/sources/{source_id}/results"
    assert links["overlay"] == f"{links['self']}/overlay"
    assert created["status"] in ("connecting", "live")

    info = _processed(client, source_id, 3)
    assert info["status"] == "live" and info["url"] == CAMERA and info["model"] == "tdmi-tiny"
    assert info["lookahead"] == 0 and info["frames_read"] >= info["frames_processed"]
    assert (info["height"], info["width"]) == FAKE_CAMERA_SIZE and info["live_since"] is not None
    assert info["last_error"] is None and info["viewers"] == 0
    assert [s["source_id"] for s in client.get("/v1/sources").json()["sources"]] == [source_id]

    deleted = client.delete(f"/v1/sources/{source_id}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "stopped"
    assert client.get(f"/v1/sources/{source_id}").status_code == 404
    assert client.delete(f"/v1/sources/{source_id}").status_code == 404
    assert client.get("/v1/sources").json() == {"sources": []}


def test_another_keys_source_is_unknown_to_it_but_not_to_an_admin(start_app: StartApp) -> None:
    client, _ = start_app(source_keys="all", **KEYS)
    source_id = _add(client, ALICE).json()["source_id"]
    for path in (f"/v1/sources/{source_id}", f"/v1/sources/{source_id}/overlay"):
        refused = client.get(path, headers=_auth(BOB))
        assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    assert client.delete(f"/v1/sources/{source_id}", headers=_auth(BOB)).status_code == 404
    assert client.get("/v1/sources", headers=_auth(BOB)).json() == {"sources": []}
    assert client.get(f"/v1/sources/{source_id}", headers=_auth(ADMIN)).status_code == 200
    assert client.get("/v1/sources").status_code == 401  # no key at all
    assert client.delete(f"/v1/sources/{source_id}", headers=_auth(ALICE)).status_code == 200


def test_only_admin_keys_add_sources_unless_all_keys_may(start_app: StartApp) -> None:
    client, _ = start_app(**KEYS)  # source_keys: admin, the default
    refused = _add(client, ALICE)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "admin" in refused.json()["detail"]
    assert _add(client, ADMIN).status_code == 201


def test_sources_beyond_max_sources_are_refused(start_app: StartApp) -> None:
    client, _ = start_app(max_sources=1)
    assert _add(client).status_code == 201
    refused = _add(client)
    assert refused.status_code == 429 and refused.json() == {
        "error": "too_many_sources",
        "detail": "limit is 1",
    }


def test_a_refused_network_is_403_whether_or_not_the_host_exists(client: TestClient) -> None:
    """Loopback (the server's own services) exists; the .invalid name does not resolve: the
    answers are the same, so a client cannot map which hosts exist."""
    answers = [
        client.post("/v1/sources", json={"url": url})
        for url in ("rtsp://127.0.0.1:6379/x", "rtsp://no-such-camera.invalid/x", "http://169.254.169.254/")
    ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert len({a.text for a in answers}) == 1, [a.text for a in answers]
    body = answers[0].json()
    assert body["error"] == "source_refused" and "TDMI_SOURCE_ALLOWED_NETWORKS" in body["detail"]
    assert "127.0.0.1" not in body["detail"] and "resolve" not in body["detail"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 422, "invalid_request"),
        ({"url": ""}, 422, "invalid_request"),
        ({"url": CAMERA, "lookahead": -1}, 422, "invalid_request"),
        ({"url": CAMERA, "max_fps": 0}, 422, "invalid_request"),
        ({"url": CAMERA, "colour": "red"}, 422, "invalid_request"),  # a misspelt option
        ({"url": CAMERA, "model": "no-such-model"}, 422, "unknown_model"),
        ({"url": CAMERA, "lookahead": 7}, 422, "invalid_config"),  # beyond the model's d
        ({"url": "ftp://192.168.1.20/x"}, 403, "source_refused"),
        ({"url": "/dev/video0"}, 403, "source_refused"),  # files only with source_allow_files
    ],
)
def test_bad_requests_are_refused_and_leave_no_source(
    client: TestClient, body: dict[str, Any], status: int, error: str
) -> None:
    reply = client.post("/v1/sources", json=body)
    assert (reply.status_code, reply.json()["error"]) == (status, error), reply.text
    assert client.get("/v1/sources").json() == {"sources": []}


def test_credentials_in_the_url_appear_in_no_answer_metric_or_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tdmi")
    url = f"rtsp://admin:{SECRET}@192.168.1.20/stream?password={SECRET}"
    created = client.post("/v1/sources", json={"url": url})
    source_id = created.json()["source_id"]
    info = _processed(client, source_id, 1)
    assert info["url"].startswith("rtsp://192.168.1.20/stream")
    with client.websocket_connect(f"ws://localhost/v1/sources/{source_id}/results") as ws:
        seen = [ws.receive_text() for _ in range(3)]
    answers = [
        created.text,
        json.dumps(info),
        client.get("/v1/sources").text,
        *seen,
        client.get("/metrics").text,
        client.delete(f"/v1/sources/{source_id}").text,
    ]
    leaks = [a for a in answers if SECRET in a or "admin:" in a]
    assert leaks == []
    assert f"source {source_id} added" in caplog.text and SECRET not in caplog.text


def test_two_viewers_get_the_same_results_in_order_and_end_when_the_source_is_deleted(
    client: TestClient,
) -> None:
    source_id = _add(client, lookahead=0).json()["source_id"]
    url = f"ws://localhost/v1/sources/{source_id}/results"
    with client.websocket_connect(url) as first, client.websocket_connect(url) as second:
        views = []
        for ws in (first, second):
            status = ws.receive_json()
            assert status["type"] == "status" and status["source_id"] == source_id
            views.append([m for m in (ws.receive_json() for _ in range(12)) if m["type"] == "result"])
        ids = [[m["frame_id"] for m in view] for view in views]
        assert all(b - a == 1 for view in ids for a, b in itertools.pairwise(view)), ids
        shared = set(ids[0]) & set(ids[1])
        assert len(shared) >= 4  # the second joined at most a frame or two later
        by_id = [{m["frame_id"]: m for m in view if m["frame_id"] in shared} for view in views]
        assert by_id[0] == by_id[1]
        assert client.get(f"/v1/sources/{source_id}").json()["viewers"] == 2
        assert client.delete(f"/v1/sources/{source_id}").status_code == 200
        for ws in (first, second):
            rest = []
            while (message := ws.receive_json())["type"] != "status":
                rest.append(message)
            assert message["status"] == "stopped" and {m["type"] for m in rest} <= {"result"}


def test_a_viewer_of_an_unknown_source_is_closed_with_not_found(client: TestClient) -> None:
    messages, code = until_closed(client, "ws://localhost/v1/sources/nope/results")
    assert code == 4004 and messages == [
        {"type": "error", "error": "not_found", "detail": "no source nope", "frame_id": None}
    ]


def test_the_overlay_serves_multipart_jpeg_parts_to_an_img(tmp_path: Path) -> None:
    """Over a real socket (uvicorn in a thread): the answer never ends while the source runs."""
    node = FakeNode(fake_settings(tmp_path / "node", **KEYS))
    with serving(node) as app:
        added = httpx.post(f"{app.base}/v1/sources", json={"url": CAMERA}, headers=_auth(ADMIN), timeout=10)
        source_id = added.json()["source_id"]
        overlay = f"{app.base}/v1/sources/{source_id}/overlay"
        parts = mjpeg_parts(overlay, 2, timeout=10, api_key=ADMIN)
        assert len(parts) == 2
        for head, body in parts:
            assert b"Content-Type: image/jpeg" in head and body.startswith(b"\xff\xd8")
            assert f"Content-Length: {len(body)}".encode() in head
        assert httpx.get(overlay, timeout=10).status_code == 401  # an <img> without the key
        listed = httpx.get(f"{app.base}/v1/sources", params={"api_key": ADMIN}, timeout=10)
        assert listed.status_code == 401  # ?api_key= is for what a browser cannot send headers with


def test_a_node_that_cannot_pull_cameras_answers_501(start_app: StartApp) -> None:
    client, node = start_app()
    node.sources = None  # a node role without camera sources
    refused = _add(client)
    assert (refused.status_code, refused.json()["error"]) == (501, "not_implemented")
    assert "not served by this node" in refused.json()["detail"]
    assert client.get("/v1/sources").status_code == 501
    messages, code = until_closed(client, "ws://localhost/v1/sources/any/results")
    assert code == 4501 and messages[0]["error"] == "not_implemented"


def test_metrics_count_sources_frames_and_viewers(client: TestClient) -> None:
    source_id = _add(client).json()["source_id"]
    _processed(client, source_id, 2)
    with client.websocket_connect(f"ws://localhost/v1/sources/{source_id}/results") as ws:
        ws.receive_json()
        metrics = client.get("/metrics").text
    assert 'tdmi_sources{state="live"} 1.0' in metrics
    assert 'tdmi_source_viewers{kind="results"} 1.0' in metrics
    processed = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('tdmi_source_frames_total{kind="processed"}')
    )
    assert processed >= 2
    client.delete(f"/v1/sources/{source_id}")
    after = client.get("/metrics").text
    assert 'tdmi_sources{state="live"} 0.0' in after and 'tdmi_source_viewers{kind="results"} 0.0' in after
