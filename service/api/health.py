"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from protocol import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get("/readyz", operation_id="readyz", responses={503: {"model": HealthPublic}})
def readyz(request: Request) -> JSONResponse:
    reason: str | None = request.app.state.not_ready_reason
    body = HealthPublic(status="ok") if reason is None else HealthPublic(status="not ready", reason=reason)
    return JSONResponse(body.model_dump(), status_code=200 if reason is None else 503)
