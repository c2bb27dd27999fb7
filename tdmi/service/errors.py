"""Domain errors mapped to HTTP answers in one place: a status and an ``ErrorPublic`` body.

Every answer carries an ``X-Request-ID`` header; a fault of ours (any exception no handler
claims) is answered with a JSON 500 naming that id, and logged with it, so a user's report can be
matched to the server's traceback without the traceback (paths, library text) reaching the user.
Errors that reach a route from deep down (media, Redis, the operating system) are answered by
their class (``tdmi.service.faults``): the input's with its 4xx, the server's passing state with 503
(507: disk full) and ``Retry-After``, never naming an address or a path.

A WebSocket refused by the same dependencies (API key, readiness) is answered in its own
protocol (docs/websocket.md): accepted, then closed with the close code of the refusal's kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketState

from tdmi.protocol import ErrorPublic
from tdmi.protocol.stream import ErrorMessage
from tdmi.service.faults import FaultClass, classify
from tdmi.service.inference.runtime import UnknownModelError
from tdmi.service.media import MediaError

__all__ = [
    "RETRY_AFTER_S",
    "ApiError",
    "RequestIds",
    "close_websocket",
    "install_error_handlers",
    "internal_reference",
    "public_failure",
]

log = logging.getLogger("tdmi.errors")
REQUEST_ID_HEADER = "x-request-id"
# a client's own id is echoed only when it is short and plain (it goes into logs and headers)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
RETRY_AFTER_S = 1  # what a 503 for a passing state of the server tells clients to wait
CLOSE_TIMEOUT_S = 2.0  # how long a WebSocket's closing error and close frame may wait for the client
# a WebSocket refused by kind: its close code and reason, and whether the error message goes
# first (the API key's refusal says all in its reason)
WEBSOCKET_REFUSALS = {
    "unauthorised": (1008, "missing or wrong API key", False),
    "not_ready": (1013, "not ready", True),
    "too_many_streams": (4029, "too many concurrent streams", True),
    "not_found": (4004, "not found", True),  # a camera source's viewer: no such source
    "not_implemented": (4501, "not implemented", True),  # camera sources on a node that serves none
}


class ApiError(Exception):
    """An error the API answers with ``status`` and a body ``{"error": kind, "detail": ...}``."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers


def error_response(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorPublic(error=kind, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def internal_reference() -> str:
    """A fresh id for a fault of ours: told to the client, logged with the traceback."""
    return uuid.uuid4().hex[:16]


def public_failure(exc: BaseException, what: str) -> str:
    """What a client may read about ``exc``: its fault's sentence (bad input, a passing state of
    the server), else a reference only.

    A bug is ours or a library's (OpenCV text with build paths, tracebacks): it is logged here
    with the reference and never shown.
    """
    fault = classify(exc)
    if fault.cls is FaultClass.TRANSIENT:  # the log has the details (a path, an address)
        log.warning("%s failed: %s (%s)", what, fault.detail, exc)
    if fault.cls is not FaultClass.BUG:
        return fault.detail
    return _internal(exc, what, internal_reference())


def _internal(exc: BaseException, what: str, reference: str, noun: str = "reference") -> str:
    log.error("%s failed (%s %s)", what, noun, reference, exc_info=exc)
    return f"internal error ({noun} {reference}); the server's log has the details"


class RequestIds:
    """ASGI middleware: an ``X-Request-ID`` on every HTTP answer, and a JSON 500 for unhandled faults."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            what = f"{scope.get('method')} {scope.get('path')}"
            detail = _internal(exc, what, request_id, "request id")
            if started:  # the answer is under way: only closing the connection is left
                raise
            await error_response(500, "internal", detail)(scope, receive, send_with_id)


async def close_websocket(ws: WebSocket, code: int, reason: str, error: ErrorMessage | None = None) -> None:
    """Close (after ``error``, if any). A client that does not read is waited for at most
    ``CLOSE_TIMEOUT_S``: the server then drops its socket without a close frame. A client that has
    already gone is no fault of ours: one that connected and dropped, or one that read ``ended``
    and closed first, crossing our close."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            if error is not None:
                await ws.send_text(error.model_dump_json())
            await ws.close(code, reason)


async def _refuse_websocket(ws: WebSocket, exc: ApiError) -> None:
    """Accept, then close with the refusal's code: a client reads the code and the error, which a
    refused handshake (an HTTP answer) would hide from a browser. A kind without a code of its
    own is our omission: 1011, with the error."""
    code, reason, tell = WEBSOCKET_REFUSALS.get(exc.kind, (1011, "internal error", True))
    if ws.application_state == WebSocketState.CONNECTING:
        await ws.accept()
    await close_websocket(ws, code, reason, ErrorMessage(error=exc.kind, detail=exc.detail) if tell else None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(RequestIds)

    @app.exception_handler(ApiError)
    async def _api_error(connection: HTTPConnection, exc: ApiError) -> JSONResponse | None:
        if isinstance(connection, WebSocket):
            await _refuse_websocket(connection, exc)
            return None
        return error_response(exc.status, exc.kind, exc.detail, exc.headers)

    @app.exception_handler(MediaError)
    @app.exception_handler(RedisError)
    @app.exception_handler(OSError)
    @app.exception_handler(MemoryError)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        """An error from deep down, answered by its class; a bug is logged under the request's id."""
        fault = classify(exc)
        if fault.cls is FaultClass.INPUT:
            return error_response(fault.status, fault.kind, fault.detail)
        what = f"{request.scope.get('method', 'WEBSOCKET')} {request.url.path}"  # a WebSocket too
        if fault.cls is FaultClass.TRANSIENT:  # the log has the address or path; the client not
            log.warning("%s: %s (%s)", what, fault.detail, exc)
            return error_response(fault.status, fault.kind, fault.detail, {"Retry-After": str(RETRY_AFTER_S)})
        request_id = request.scope.get("state", {}).get("request_id", "")
        return error_response(500, "internal", _internal(exc, what, request_id, "request id"))

    @app.exception_handler(UnknownModelError)
    async def _unknown_model(request: Request, exc: UnknownModelError) -> JSONResponse:
        return error_response(422, "unknown_model", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))
