"""The error contract: every HTTP error is JSON ``{"error", "detail"}`` with an ``X-Request-ID``; a
fault of ours is a 500 naming that id, whose traceback goes to the log and never to the client."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.helpers.in_process import STREAM_URL, StartApp, TestClient, WebSocketDenialResponse
from tests.helpers.synth import SynthVideo


def _assert_error(reply: httpx.Response, status: int, kind: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == kind and set(reply.json()) == {"error", "detail"}
    assert len(reply.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/no/such/route", 404, "not_found"),
        ("PUT", "/v1/pose", 405, "method_not_allowed"),
        ("POST", "/v1/pose?wait=maybe", 422, "invalid_request"),
        ("GET", f"/v1/pose/{'0' * 32}/result?format=xml", 422, "invalid_request"),
        ("GET", f"/v1/pose/{'0' * 32}", 404, "not_found"),
        ("GET", "/v1/pose/" + "x" * 5000, 404, "not_found"),
        ("GET", "/web/../secrets", 404, "not_found"),
    ],
)
def test_every_http_error_is_json_with_a_request_id(
    client: TestClient, method: str, path: str, status: int, kind: str
) -> None:
    _assert_error(client.request(method, path), status, kind)


def test_a_clients_own_request_id_is_echoed_when_plain(client: TestClient) -> None:
    assert client.get("/readyz", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
    mine = "bad id\twith spaces"
    assert client.get("/readyz", headers={"X-Request-ID": mine}).headers["x-request-id"] != mine


def test_the_guards_refusals_are_json_with_a_request_id(client: TestClient) -> None:
    """The request guard answers before any route: a Host the service does not answer for (DNS
    rebinding), a state-changing request from a foreign page (cross-site)."""
    _assert_error(client.get("/readyz", headers={"Host": "evil.example"}), 421, "host_not_allowed")
    foreign = {"Origin": "https://evil.example"}
    _assert_error(client.post("/v1/pose", headers=foreign, files={"file": b"x"}), 403, "cross_site")
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect(STREAM_URL, headers=foreign),
    ):
        pass
    assert refused.value.status_code == 403  # the handshake itself is refused, in JSON
    assert refused.value.json()["error"] == "cross_site"


def test_an_internal_fault_is_a_json_500_with_the_request_id_in_the_log(
    start_app: StartApp, synth_video: SynthVideo, caplog: pytest.LogCaptureFixture
) -> None:
    """A job's result file lost from the data directory: our fault, not the client's."""
    client, node = start_app()
    reply = client.post(
        "/v1/pose", params={"wait": "true"}, files={"file": ("v.mp4", synth_video.path.read_bytes())}
    )
    assert reply.status_code == 200, reply.text
    job_id = reply.json()["job_id"]
    node_dir = node.settings.data_dir
    (result_file,) = node_dir.rglob(f"{job_id}*.json")
    result_file.unlink()
    with caplog.at_level(logging.ERROR):
        reply = client.get(f"/v1/pose/{job_id}/result")
    _assert_error(reply, 500, "internal")
    request_id = reply.headers["x-request-id"]
    detail = reply.json()["detail"]
    assert request_id in detail and str(node_dir) not in detail and "Traceback" not in detail
    (logged,) = [r for r in caplog.records if f"request id {request_id}" in r.getMessage()]
    assert logged.exc_info is not None and logged.exc_info[0] is FileNotFoundError
    assert client.get("/readyz").status_code == 200


def test_the_schema_names_the_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/v1/models"]["get"]["operationId"] == "list_models"
    assert paths["/v1/pose"]["post"]["operationId"] == "create_job"
    assert "multipart/form-data" in paths["/v1/pose"]["post"]["requestBody"]["content"]
