"""``GET /v1/workers``: the inference workers and their load (cluster-wide through any API node)."""

from __future__ import annotations

from fastapi import APIRouter

from tdmi.protocol import ErrorPublic, WorkersPublic
from tdmi.service.deps import Authorised, ReadyNodeDep

router = APIRouter(prefix="/v1", tags=["operations"], dependencies=[Authorised])


@router.get("/workers", operation_id="list_workers", responses={503: {"model": ErrorPublic}})
async def list_workers(node: ReadyNodeDep) -> WorkersPublic:
    """A Redis that went away since the node's last check is answered 503 with ``Retry-After``
    (``tdmi.service.errors``), without its address."""
    return await node.workers()
