"""``create_app(settings)``: the FastAPI application; models, jobs and streams start in the lifespan.

Embedded mode (no ``redis_url``): this process loads the models and is its own worker. API node
of a cluster (``redis_url`` set): jobs and live streams go to workers over Redis (``cluster/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tdmi.service.api import health, jobs, metrics, models, page, stream, workers
from tdmi.service.cluster.node import ApiNode
from tdmi.service.config import Settings, get_settings
from tdmi.service.errors import install_error_handlers
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.jobs.service import JobService
from tdmi.service.jobs.sqlite import SqliteJobQueue
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.feed import LocalFeed

__all__ = ["create_app"]

log = logging.getLogger("tdmi.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        state.metrics = ServiceMetrics()
        state.started_at = time.time()
        state.runtime = state.sessions = state.catalog = state.jobs = state.node = None
        state.streams = {}
        state.accepting = True
        state.not_ready_reason = "loading models"
        try:
            await (_start_cluster(state) if settings.redis_url else _start_embedded(state))
        except Exception as exc:  # not ready, with the reason on /readyz; the process stays up
            state.not_ready_reason = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            )
            log.error("not ready: %s", state.not_ready_reason)
        try:
            yield
        finally:
            await _shut_down(app)

    app = FastAPI(
        title="TDMI pose service",
        version="0.1.0",
        description="Multi-person human pose for video: video jobs over REST, live feeds over WebSocket.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, models, jobs, stream, workers, metrics, page):
        app.include_router(module.router)
    return app


async def _start_embedded(state: Any) -> None:
    settings = state.settings
    state.runtime = InferenceRuntime(settings, state.metrics)
    await state.runtime.start()
    sessions = state.sessions = SessionFactory(settings, state.metrics)
    queue = SqliteJobQueue(settings.data_dir)
    runner = JobRunner(queue, state.runtime, sessions, settings, state.metrics)
    state.jobs = JobService(queue, settings, state.metrics, runner)
    await state.jobs.start()
    state.open_feed = functools.partial(
        LocalFeed, runtime=state.runtime, sessions=sessions, settings=settings, metrics=state.metrics
    )
    state.catalog = state.runtime
    state.not_ready_reason = None
    log.info("ready: %s", ", ".join(state.runtime.models))


async def _start_cluster(state: Any) -> None:
    """No models here: requests go to the workers; ready while Redis answers."""
    state.not_ready_reason = "connecting to redis"
    node = state.node = ApiNode(
        state.settings, state.metrics, lambda reason: setattr(state, "not_ready_reason", reason)
    )
    state.jobs, state.catalog, state.open_feed = node.jobs, node.catalog, node.link.feed
    await node.start()
    await node.watch.check()
    log.info("API node %s of the cluster at %s", node.node_id, state.settings.redis_url)


async def _shut_down(app: FastAPI) -> None:
    """Stop taking work, close live streams (1012), requeue running jobs, stop the engines."""
    state = app.state
    state.accepting = False
    state.not_ready_reason = "shutting down"
    for live in list(state.streams.values()):
        with contextlib.suppress(Exception):  # a peer that is already gone
            await asyncio.wait_for(live.ws.close(1012, "server shutting down"), timeout=2)
    if state.node is not None:
        await state.node.stop()
    if state.jobs is not None:
        await state.jobs.stop()
    if state.sessions is not None:
        state.sessions.close()
    if state.runtime is not None:
        await state.runtime.stop()
