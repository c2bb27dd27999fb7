"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/metrics", operation_id="metrics", response_class=Response)
def metrics(request: Request) -> Response:
    state = request.app.state
    runtime = getattr(state, "runtime", None)
    if runtime is not None:
        for name, model in runtime.models.items():
            state.metrics.queue_depth.labels(name).set(len(model.engine.batcher))
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
