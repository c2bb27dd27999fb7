"""The service's application around a ``FakeNode``, driven from the test's own process.

``app_client`` gives a Starlette ``TestClient`` (no socket: HTTP and WebSocket through ASGI);
``serving`` runs the application under uvicorn in a thread on a loopback port, for clients that
need a real socket (the SDK, its command line, a subprocess). Either runs the application's
lifespan, so the node starts and stops as under ``tdmi serve``.

``TestClient``'s WebSocket reads wait without a deadline: the settings here close a stream that
hears nothing for ``IDLE_S`` (4000), so a test that waits for a message that never comes fails
with that close instead of hanging.
"""

from __future__ import annotations

import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.websockets import WebSocketDisconnect

from tdmi.service.config import Settings
from tdmi.service.main import build_app
from tests.helpers.fake_node import FakeNode
from tests.helpers.waits import until

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the SDK's client) still works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession

__all__ = [
    "IDLE_S",
    "STREAM_URL",
    "ServedApp",
    "StartApp",
    "TestClient",
    "WebSocketDenialResponse",
    "app_client",
    "fake_settings",
    "receive_until",
    "serving",
    "until_closed",
]

IDLE_S = 20.0
# the ``start_app`` fixture of the in-process tests: (jobs_run, models, **settings) -> (client, node)
StartApp = Callable[..., tuple[TestClient, FakeNode]]
# TestClient's WebSockets name the host "testserver" unless the URL is whole; the service answers
# its loopback names only (tdmi.service.origins)
STREAM_URL = "ws://localhost/v1/stream"


def fake_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an in-process node in ``data_dir``: streams idle for ``IDLE_S`` close."""
    return Settings(data_dir=data_dir, **{"ws_idle_timeout_s": IDLE_S, **overrides})


@contextmanager
def app_client(node: FakeNode) -> Iterator[TestClient]:
    """A client of the application around ``node``, started (its lifespan ran) for the block."""
    with TestClient(build_app(node), base_url="http://localhost") as client:
        yield client


def receive_until(ws: WebSocketTestSession, *kinds: str) -> list[dict[str, Any]]:
    """Stream messages up to and including the first of a type in ``kinds``."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] not in kinds:
        seen.append(ws.receive_json())
    return seen


def until_closed(
    client: TestClient, url: str = STREAM_URL, **headers: str
) -> tuple[list[dict[str, Any]], int]:
    """Connect and read until the server closes: the messages before the close, and its code."""
    messages: list[dict[str, Any]] = []
    try:
        with client.websocket_connect(url, headers=headers) as ws:
            while True:
                messages.append(ws.receive_json())
    except WebSocketDisconnect as closed:
        return messages, closed.code


@dataclass(frozen=True)
class ServedApp:
    """The application around ``node``, served at ``base`` (``http://127.0.0.1:PORT``)."""

    base: str
    node: FakeNode


@contextmanager
def serving(node: FakeNode) -> Iterator[ServedApp]:
    """The application around ``node`` under uvicorn in a thread, for the block."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(build_app(node), log_config=None, ws_max_size=node.settings.max_message_bytes)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        until(lambda: server.started or not thread.is_alive(), "uvicorn started", timeout=30)
        assert server.started, "uvicorn did not start"
        yield ServedApp(f"http://127.0.0.1:{listener.getsockname()[1]}", node)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
