"""Liveness and readiness."""

from __future__ import annotations

import torch
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tdmi.protocol import HealthPublic
from tdmi.service.deps import AnyNodeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", responses={503: {"model": HealthPublic}})
def healthz(node: AnyNodeDep) -> JSONResponse:
    """The process is alive and its configured device is usable (models may still be loading)."""
    device = node.settings.device
    usable = not device.startswith("cuda") or torch.cuda.is_available()
    reason = None if usable else f"device {device} is not usable"
    body = HealthPublic(status="ok" if usable else "not ready", reason=reason)
    return JSONResponse(body.model_dump(), status_code=200 if usable else 503)


@router.get("/readyz", operation_id="readyz", responses={503: {"model": HealthPublic}})
def readyz(node: AnyNodeDep) -> JSONResponse:
    reason = node.readiness.reason
    body = HealthPublic(status="ok") if reason is None else HealthPublic(status="not ready", reason=reason)
    return JSONResponse(body.model_dump(), status_code=200 if reason is None else 503)
