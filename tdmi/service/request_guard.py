"""ASGI middleware at the service's edge: who may send a request, and how long its body may stall.

Before a route runs (``tdmi.service.origins`` has the rules):

- a ``Host`` the service does not answer for is refused, 421 ``host_not_allowed`` (HTTP and
  WebSocket handshakes alike: DNS rebinding);
- a WebSocket handshake or a state-changing request (any method but GET, HEAD, OPTIONS) from a
  foreign page is refused, 403 ``cross_site``. This holds with API keys too: a page of another
  site has no business driving the service unless its origin is listed in ``allowed_origins``.
  A WebSocket is refused with the HTTP answer itself (the ASGI denial response, which uvicorn
  supports), before it is accepted.

While a route reads the request body, a body silent for ``body_timeout_s`` is answered 408
``request_timeout`` and the connection closed. A request the server cancels before answering
(a shutdown past its grace period, with an upload still arriving) is answered 503
``shutting_down`` rather than uvicorn's plain-text 500.

Each HTTP answer leaves once the log lines logged before it are written (``logs``, a thread
writes them; at most a short wait): a client that reads the log after an answer finds them.
The middleware is the outermost: its own answers carry an ``X-Request-ID`` of their own.

No CORS header is ever sent: a foreign page can neither read an answer nor pass a preflight.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tdmi.service.client_text import shown
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError, error_response
from tdmi.service.logs import records_written
from tdmi.service.origins import HostRule, OriginRule

__all__ = ["RequestGuard"]

log = logging.getLogger("tdmi.http")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.hosts = HostRule.of(settings)
        self.origins = OriginRule.of(settings)
        self.body_timeout_s = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope, Headers(scope=scope))
        if refusal is not None:
            request_id = uuid.uuid4().hex
            log.warning(
                "refused %d %s (request id %s): %s", refusal.status, refusal.kind, request_id, refusal.detail
            )
            await _answer(refusal, request_id, scope, receive, send)
        elif scope["type"] == "websocket":
            await self.app(scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> ApiError | None:
        host = headers.get("host")
        if not self.hosts.allows(host):
            detail = f"this server does not answer for host {shown(host or '')!r}; see TDMI_ALLOWED_HOSTS"
            return ApiError(421, "host_not_allowed", detail)
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        page = self.origins.foreign(headers)
        if page is None:
            return None
        what = "a WebSocket" if scope["type"] == "websocket" else f"a {scope['method']} request"
        detail = f"{what} from {shown(page)!r} is refused: not this server's origin; see TDMI_ALLOWED_ORIGINS"
        return ApiError(403, "cross_site", detail)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                await records_written()
            await send(message)

        body = _BodyDeadline(receive, self.body_timeout_s)
        try:
            await self.app(scope, body.receive, send_watched)
        except asyncio.CancelledError:
            if started:
                raise
            # The task ends here either way: answer in JSON instead of letting uvicorn print a
            # traceback and send its plain-text 500.
            refusal = ApiError(503, "shutting_down", "the server is shutting down; retry")
            await _answer(refusal, uuid.uuid4().hex, scope, receive, send)


async def _answer(refusal: ApiError, request_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    """The JSON error, closing the connection (a WebSocket's handshake is answered by it)."""
    await records_written()
    headers = {"X-Request-ID": request_id, "Connection": "close"}
    await error_response(refusal.status, refusal.kind, refusal.detail, headers)(scope, receive, send)


class _BodyDeadline:
    """``receive`` for a route: while the body is incomplete, each wait for more is bounded."""

    def __init__(self, receive: Receive, timeout_s: float):
        self._receive, self.timeout_s = receive, timeout_s
        self._body_done = False

    async def receive(self) -> Message:
        if self._body_done:  # only the disconnect is left to wait for, as long as the answer takes
            return await self._receive()
        try:
            async with asyncio.timeout(self.timeout_s):
                message = await self._receive()
        except TimeoutError:
            detail = f"the request body stalled: nothing arrived for {self.timeout_s:g} s"
            raise ApiError(408, "request_timeout", detail, {"Connection": "close"}) from None
        self._body_done = message["type"] != "http.request" or not message.get("more_body", False)
        return message
