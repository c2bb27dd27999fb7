"""The service's HTTP server: uvicorn, with h11 parsing each connection and every request head
bounded, and the server's last log lines written before its process ends.

uvicorn's default parser (httptools) sets no limit on the request line or the headers, and no
time limit on a request head. Here (``LimitedH11Protocol``), before the application sees a request:

- the head is held to ``max_url_bytes + max_header_bytes`` while it arrives (h11 buffers no
  more): 414 when the request line is what overflowed, 431 otherwise; a whole head whose target
  is longer than ``max_url_bytes`` is 414, whose header lines are longer than ``max_header_bytes``
  together, 431;
- a connection must deliver a whole request head within ``header_timeout_s`` of opening or of
  its last answer, else it is closed (a slowloris client holds a descriptor that long at most);
- with more than ``max_connections`` connections open (WebSockets included), a request is
  answered 503;
- a request h11 cannot parse is answered 400.

Each of these answers is the service's JSON error body with an ``X-Request-ID``, and closes the
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from tdmi.protocol import ErrorPublic
from tdmi.service.config import Settings

__all__ = ["HeadLimits", "LimitedH11Protocol", "run_http_server", "server_config"]

log = logging.getLogger("tdmi.http")

# the request line beyond its target: the longest method, spaces, "HTTP/1.1", CRLF
_REQUEST_LINE_EXTRA = 32


@dataclass(frozen=True)
class HeadLimits:
    url_bytes: int
    header_bytes: int
    timeout_s: float
    connections: int

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(
            settings.max_url_bytes,
            settings.max_header_bytes,
            settings.header_timeout_s,
            settings.max_connections,
        )

    @property
    def head_bytes(self) -> int:
        """What h11 may buffer of one request head."""
        return self.url_bytes + _REQUEST_LINE_EXTRA + self.header_bytes


@dataclass(frozen=True)
class Refusal:
    status: int
    kind: str
    detail: str


class _CheckedConnection(h11.Connection):
    """h11's server side that puts each complete request head to ``accept`` (False: refused and
    answered; reading stops) and keeps the last parse error for the answer to it."""

    def __init__(self, max_head_bytes: int, accept: Callable[[h11.Request], bool]):
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.accept = accept
        self.error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise
        if isinstance(event, h11.Request) and not self.accept(event):
            return h11.PAUSED
        return event


class LimitedH11Protocol(H11Protocol):
    """One connection; uvicorn's ``http`` is a subclass with the limits, :meth:`with_limits`."""

    limits: HeadLimits

    @classmethod
    def with_limits(cls, limits: HeadLimits) -> type[LimitedH11Protocol]:
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.checked = _CheckedConnection(self.limits.head_bytes, self._accept)
        self.conn = self.checked
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._await_head()  # first: the base may go straight on to a pipelined request
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 could not parse: ours, by what went wrong."""
        self._refuse(self._parse_refusal())

    def _accept(self, request: h11.Request) -> bool:
        self._head_arrived()
        refusal = self._head_refusal(request)
        if refusal is not None:
            self._refuse(refusal)
        return refusal is None

    def _head_refusal(self, request: h11.Request) -> Refusal | None:
        limits = self.limits
        if len(self.connections) > limits.connections:
            detail = f"the server has {limits.connections} connections open, its most; retry"
            return Refusal(503, "too_many_connections", detail)
        if len(request.target) > limits.url_bytes:
            return _url_too_long(limits)
        if sum(len(name) + len(value) + 4 for name, value in request.headers) > limits.header_bytes:
            return _headers_too_large(limits)
        return None

    def _parse_refusal(self) -> Refusal:
        error = self.checked.error
        if error is None or error.error_status_hint != 431:
            return Refusal(400, "invalid_request", "malformed HTTP request")
        buffered, _ = self.checked.trailing_data  # at most head_bytes and one read
        line_end = buffered.find(b"\n", 0, self.limits.url_bytes + _REQUEST_LINE_EXTRA)
        return _url_too_long(self.limits) if line_end < 0 else _headers_too_large(self.limits)

    @property
    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"

    def _refuse(self, refusal: Refusal) -> None:
        request_id = uuid.uuid4().hex
        log.warning("%s answered %d %s (request id %s)", self._peer, refusal.status, refusal.kind, request_id)
        body = ErrorPublic(error=refusal.kind, detail=refusal.detail).model_dump_json().encode()
        lines = [f"HTTP/1.1 {refusal.status} {http.HTTPStatus(refusal.status).phrase}".encode()]
        lines += [name + b": " + value for name, value in self.server_state.default_headers]
        lines += [
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close",
            b"x-request-id: " + request_id.encode(),
        ]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _head_arrived(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        """No whole request head in time: close (a client that sent part of one is logged)."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.checked.trailing_data[0]:
            log.warning("%s closed: no whole request head within %g s", self._peer, self.limits.timeout_s)
        self.transport.close()


def _url_too_long(limits: HeadLimits) -> Refusal:
    return Refusal(414, "url_too_long", f"the request target is longer than {limits.url_bytes} bytes")


def _headers_too_large(limits: HeadLimits) -> Refusal:
    detail = f"the request's header lines are longer than {limits.header_bytes} bytes together"
    return Refusal(431, "headers_too_large", detail)


class _Server(uvicorn.Server):
    """uvicorn's server, whose last log lines are written before it returns: after a signal it
    raises the signal again under the default handler, which ends the process at once, before
    ``atexit`` could write what the log thread still holds."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                for handler in logging.getLogger().handlers:
                    handler.flush()


def run_http_server(app: Any, settings: Settings, listener: socket.socket) -> None:
    """Serve ``app`` on ``listener`` until a signal."""
    _Server(server_config(app, settings)).run(sockets=[listener])


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration from the settings; uvicorn's own logging set-up is skipped (its
    loggers reach the service's handler, ``logs.configure_logging``)."""
    return uvicorn.Config(
        app,
        http=LimitedH11Protocol.with_limits(HeadLimits.of(settings)),
        log_config=None,
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=10,
    )
