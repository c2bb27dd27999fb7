"""``GET /v1/workers``: the inference workers and their load (cluster-wide through any API node)."""

from __future__ import annotations

from fastapi import APIRouter

from tdmi.protocol import ErrorPublic, WorkersPublic
from tdmi.service.cluster.connection import TRANSIENT
from tdmi.service.deps import Authorised, ReadyNodeDep
from tdmi.service.errors import ApiError

router = APIRouter(prefix="/v1", tags=["operations"], dependencies=[Authorised])


@router.get("/workers", operation_id="list_workers", responses={503: {"model": ErrorPublic}})
async def list_workers(node: ReadyNodeDep) -> WorkersPublic:
    try:
        return await node.workers()
    except TRANSIENT as exc:  # an API node whose Redis went away since its last check
        raise ApiError(503, "redis_unreachable", f"redis unreachable: {exc}") from None
