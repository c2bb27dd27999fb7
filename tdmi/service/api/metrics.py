"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from tdmi.service.deps import AnyNodeDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", operation_id="metrics", response_class=Response)
def metrics(node: AnyNodeDep) -> Response:
    for name, depth in node.queue_depths().items():
        node.metrics.queue_depth.labels(name).set(depth)
    return Response(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)
