"""Domain errors mapped to HTTP answers in one place: a status and an ``ErrorPublic`` body."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tdmi.protocol import ErrorPublic
from tdmi.service.inference.runtime import UnknownModelError
from tdmi.service.media import HTTP_STATUS, MediaError

__all__ = ["ApiError", "install_error_handlers"]


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.detail, exc.headers)

    @app.exception_handler(MediaError)
    async def _media_error(request: Request, exc: MediaError) -> JSONResponse:
        return error_response(HTTP_STATUS[exc.kind], exc.kind, str(exc))

    @app.exception_handler(UnknownModelError)
    async def _unknown_model(request: Request, exc: UnknownModelError) -> JSONResponse:
        return error_response(422, "unknown_model", str(exc))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _redis_down(request: Request, exc: RedisError) -> JSONResponse:
        """A cluster node whose Redis is away answers 503 (retry), never 500."""
        return error_response(503, "redis_unreachable", f"redis unreachable: {exc}", {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))
