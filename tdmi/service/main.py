"""The FastAPI applications: ``create_app`` for ``tdmi serve``, ``create_worker_app`` for ``tdmi worker``.

Both run one lifespan around one node (``tdmi.service.nodes``): the node starts there, never at
import, and the role is chosen here, once. Embedded (no ``redis_url``): this process loads the
models and is its own worker. API node (``redis_url`` set): jobs and live streams go to the
workers over Redis (``tdmi.service.cluster``). A worker node serves only its health and metrics over HTTP.
``build_app`` and ``build_worker_app`` make the same applications around a node they are given,
so that the HTTP layer can be tested in-process against a node without models.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from tdmi.service.api import docs, health, jobs, metrics, models, page, sources, stream, workers
from tdmi.service.config import Settings
from tdmi.service.errors import install_error_handlers
from tdmi.service.nodes.api import ApiNode
from tdmi.service.nodes.embedded import EmbeddedNode
from tdmi.service.nodes.node import Node, ServingNode
from tdmi.service.nodes.worker import WorkerNode
from tdmi.service.request_guard import RequestGuard

__all__ = ["build_app", "build_worker_app", "create_app", "create_worker_app"]

log = logging.getLogger("tdmi.service")

_VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The pose service: embedded, or an API node of a cluster when ``redis_url`` is set."""
    settings = settings or Settings()  # called bare (`uvicorn --factory`): from the environment
    return build_app(ApiNode(settings) if settings.redis_url else EmbeddedNode(settings))


def build_app(node: ServingNode) -> FastAPI:
    """The public API around ``node``, whichever it is: tests give it a node without models."""
    return _app(
        node,
        "TDMI pose service",
        "Multi-person human pose for video: video jobs over REST, live feeds over WebSocket, camera sources.",
        (m.router for m in (health, models, jobs, sources, stream, workers, metrics, page, docs)),
    )


def create_worker_app(settings: Settings) -> FastAPI:
    """A worker node of a cluster: health and metrics only; its work comes from Redis."""
    return build_worker_app(WorkerNode(settings))


def build_worker_app(node: Node) -> FastAPI:
    """A worker's HTTP side around ``node``: its probes and metrics, nothing of the public API."""
    return _app(
        node,
        "TDMI pose worker",
        "A worker node of a TDMI pose cluster.",
        (m.router for m in (health, metrics, docs)),
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

    app = FastAPI(
        title=title,
        version=_VERSION,
        description=description,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: api/docs.py serves them from local files
        redoc_url=None,
    )
    app.state.node = node  # the one attribute of the app's state; routes read it through deps
    install_error_handlers(app)
    app.add_middleware(RequestGuard, settings=node.settings)  # outermost: before anything reads a request
    for router in routers:
        app.include_router(router)
    return app
