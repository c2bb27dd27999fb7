"""The FastAPI applications: ``create_app`` for ``tdmi serve``, ``create_worker_app`` for ``tdmi worker``.

Both run one lifespan around one node (``service.node``): the node starts there, never at
import, and the role is chosen here, once. Embedded (no ``redis_url``): this process loads the
models and is its own worker. API node (``redis_url`` set): jobs and live streams go to the
workers over Redis (``cluster/``). A worker node serves only its health and metrics over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from tdmi.service.api import health, jobs, metrics, models, page, stream, workers
from tdmi.service.cluster.node import ApiNode
from tdmi.service.cluster.worker import WorkerNode
from tdmi.service.config import Settings, get_settings
from tdmi.service.embedded import EmbeddedNode
from tdmi.service.errors import install_error_handlers
from tdmi.service.node import Node, ServingNode
from tdmi.service.request_guard import RequestGuard

__all__ = ["create_app", "create_worker_app"]

log = logging.getLogger("tdmi.service")

_VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The pose service: embedded, or an API node of a cluster when ``redis_url`` is set."""
    settings = settings or get_settings()
    node: ServingNode = ApiNode(settings) if settings.redis_url else EmbeddedNode(settings)
    return _app(
        node,
        "TDMI pose service",
        "Multi-person human pose for video: video jobs over REST, live feeds over WebSocket.",
        (m.router for m in (health, models, jobs, stream, workers, metrics, page)),
    )


def create_worker_app(settings: Settings) -> FastAPI:
    """A worker node of a cluster: health and metrics only; its work comes from Redis."""
    return _app(
        WorkerNode(settings),
        "TDMI pose worker",
        "A worker node of a TDMI pose cluster.",
        (m.router for m in (health, metrics)),
    )


def _app(node: Node, title: str, description: str, routers: Iterable[APIRouter]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await node.start()
        except Exception as exc:  # not ready, with the reason on /readyz; the process stays up
            node.readiness.failed(exc)
            log.error("not ready: %s", node.readiness.reason)
        try:
            yield
        finally:
            node.readiness.shut_down()
            await node.stop()

    app = FastAPI(title=title, version=_VERSION, description=description, lifespan=lifespan)
    app.state.node = node  # the one attribute of the app's state; routes read it through deps
    install_error_handlers(app)
    app.add_middleware(RequestGuard, settings=node.settings)  # outermost: before anything reads a request
    for router in routers:
        app.include_router(router)
    return app
