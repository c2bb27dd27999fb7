"""``GET /v1/workers``: the inference workers and their load (cluster-wide through any API node)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tdmi.protocol import ErrorPublic, WorkersPublic
from tdmi.service.cluster.connection import TRANSIENT
from tdmi.service.cluster.registry import snapshot
from tdmi.service.deps import Authorised
from tdmi.service.errors import ApiError

router = APIRouter(prefix="/v1", tags=["operations"], dependencies=[Authorised])


@router.get("/workers", operation_id="list_workers", responses={503: {"model": ErrorPublic}})
async def list_workers(request: Request) -> WorkersPublic:
    state = request.app.state
    if state.node is not None:
        try:
            return WorkersPublic(mode="cluster", workers=await state.node.registry.live())
        except TRANSIENT as exc:
            raise ApiError(503, "redis_unreachable", f"redis unreachable: {exc}") from None
    if state.runtime is None or state.jobs is None:
        raise ApiError(503, "not_ready", state.not_ready_reason or "starting")
    own = snapshot(
        "embedded",
        state.settings,
        state.runtime,
        state.metrics,
        streams=len(state.streams),
        jobs=len(state.jobs.running),
        started_at=state.started_at,
    )
    return WorkersPublic(mode="embedded", workers=[own])
