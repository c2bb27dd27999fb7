"""uvicorn as the service configures it, on a loopback port: what a WebSocket peer is offered."""

from __future__ import annotations

import socket
import threading

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from tdmi.service.config import Settings
from tdmi.service.http_server import server_config
from tests.helpers.waits import until


async def _hello(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text('{"type": "hello"}')
    await ws.close()


@pytest.mark.parametrize("compression", [False, True])
def test_websocket_compression_is_negotiated_only_when_the_setting_allows_it(compression: bool) -> None:
    """A client offers permessage-deflate (as browsers and ``websockets`` do); the server takes the
    offer only with ``ws_compression``, so that by default no result is compressed per viewer."""
    app = Starlette(routes=[WebSocketRoute("/ws", _hello)])
    server = uvicorn.Server(server_config(app, Settings(ws_compression=compression)))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        until(lambda: server.started or not thread.is_alive(), "uvicorn started", timeout=30)
        with connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/ws", compression="deflate") as ws:
            assert ws.recv(timeout=10) == '{"type": "hello"}'
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) == compression
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
