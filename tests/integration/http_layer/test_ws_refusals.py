"""``/v1/stream`` is refused by the HTTP routes' own dependencies (the API key, readiness), and the
refusal is the WebSocket protocol's (docs/websocket.md: accepted, the error, the close code),
never an HTTP answer to the handshake."""

from __future__ import annotations

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from tdmi.service.errors import ApiError, install_error_handlers
from tests.helpers.in_process import STREAM_URL, StartApp, TestClient, until_closed

KEY = "s3cret"


def _close(client: TestClient, url: str = STREAM_URL) -> tuple[int, str]:
    """The close code and reason of a stream that is refused at once."""
    try:
        with client.websocket_connect(url) as ws:
            ws.receive_json()
    except WebSocketDisconnect as closed:
        return closed.code, closed.reason
    raise AssertionError("the stream was not closed")


def test_the_key_is_checked_before_readiness_and_its_close_says_all(start_app: StartApp) -> None:
    client, node = start_app(api_keys=[KEY])
    node.readiness.set("loading models")
    assert until_closed(client) == ([], 1008)  # no error message: the reason says it
    assert _close(client, f"{STREAM_URL}?api_key=wrong") == (1008, "missing or wrong API key")
    (error,), code = until_closed(client, f"{STREAM_URL}?api_key={KEY}")
    assert (code, error["error"], error["detail"]) == (1013, "not_ready", "loading models")


def test_a_node_shutting_down_takes_no_new_stream(start_app: StartApp) -> None:
    client, node = start_app()
    node.readiness.shut_down()
    (error,), code = until_closed(client)
    assert error == {"type": "error", "error": "not_ready", "detail": "shutting down", "frame_id": None}
    assert code == 1013


def test_http_takes_the_key_from_headers_only(start_app: StartApp) -> None:
    """``?api_key=`` is for WebSockets, whose headers a browser cannot set; on HTTP a key in the
    URL would reach proxies' logs and browsers' histories, so it is not taken."""
    client, _ = start_app(api_keys=[KEY])
    refused = client.get(f"/v1/models?api_key={KEY}")
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorised")
    assert client.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200


def test_a_refusal_without_a_close_code_of_its_own_is_1011_with_its_error() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.websocket("/refused")
    async def refused(ws: WebSocket) -> None:
        raise ApiError(409, "conflict", "no such thing")

    with TestClient(app) as client:
        (error,), code = until_closed(client, "ws://localhost/refused")
    assert (code, error["error"], error["detail"]) == (1011, "conflict", "no such thing")
