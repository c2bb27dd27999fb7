"""Liveness and readiness."""

from __future__ import annotations

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tdmi.protocol import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", responses={503: {"model": HealthPublic}})
def healthz(request: Request) -> JSONResponse:
    """The process is alive and its configured device is usable (models may still be loading)."""
    device = request.app.state.settings.device if hasattr(request.app.state, "settings") else "cpu"
    usable = not device.startswith("cuda") or torch.cuda.is_available()
    reason = None if usable else f"device {device} is not usable"
    body = HealthPublic(status="ok" if usable else "not ready", reason=reason)
    return JSONResponse(body.model_dump(), status_code=200 if usable else 503)


@router.get("/readyz", operation_id="readyz", responses={503: {"model": HealthPublic}})
def readyz(request: Request) -> JSONResponse:
    reason: str | None = request.app.state.not_ready_reason
    body = HealthPublic(status="ok") if reason is None else HealthPublic(status="not ready", reason=reason)
    return JSONResponse(body.model_dump(), status_code=200 if reason is None else 503)
