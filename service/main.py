"""``create_app(settings)``: the FastAPI application; models, jobs and streams start in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api import health, jobs, metrics, models, page, stream
from service.config import Settings, get_settings
from service.errors import install_error_handlers
from service.inference.runtime import InferenceRuntime
from service.jobs.runner import JobRunner
from service.jobs.store import JobStore
from service.metrics import ServiceMetrics
from service.streaming.factory import SessionFactory

__all__ = ["create_app"]

log = logging.getLogger("tdmi.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        state.metrics = ServiceMetrics()
        state.runtime = InferenceRuntime(settings, state.metrics)
        state.sessions = None
        state.jobs = None
        state.streams = {}
        state.accepting = True
        state.not_ready_reason = "loading models"
        try:
            await state.runtime.start()
            state.sessions = SessionFactory(settings, state.metrics)
            state.jobs = JobRunner(
                JobStore(settings.data_dir), state.runtime, state.sessions, settings, state.metrics
            )
            await state.jobs.start()
            state.not_ready_reason = None
            log.info("ready: %s", ", ".join(state.runtime.models))
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
    for module in (health, models, jobs, stream, metrics, page):
        app.include_router(module.router)
    return app


async def _shut_down(app: FastAPI) -> None:
    """Stop taking work, close live streams (1012), requeue running jobs, stop the engines."""
    state = app.state
    state.accepting = False
    state.not_ready_reason = "shutting down"
    for live in list(state.streams.values()):
        with contextlib.suppress(Exception):  # a peer that is already gone
            await asyncio.wait_for(live.ws.close(1012, "server shutting down"), timeout=2)
    if state.jobs is not None:
        await state.jobs.stop()
        state.jobs.store.close()
    if state.sessions is not None:
        state.sessions.close()
    await state.runtime.stop()
