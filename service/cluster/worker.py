"""``tdmi worker --redis URL``: an inference worker of a cluster.

It loads the models onto its device, takes video jobs from the queue, hosts the live streams
pinned to it, and reports its load every heartbeat. It also serves ``/healthz``, ``/readyz`` and
``/metrics`` over HTTP, for container health checks and Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tdmi.service.api import health, metrics
from tdmi.service.cluster.connection import TRANSIENT, Backoff, RedisWatch, connect
from tdmi.service.cluster.jobs import RedisJobQueue
from tdmi.service.cluster.live_host import LiveHost
from tdmi.service.cluster.registry import Registry, snapshot
from tdmi.service.config import Settings
from tdmi.service.errors import install_error_handlers
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.feed import LocalFeed

__all__ = ["create_worker_app"]

log = logging.getLogger("tdmi.cluster.worker")


class Worker:
    def __init__(self, settings: Settings, metrics: ServiceMetrics, set_reason: Callable[[str | None], None]):
        assert settings.redis_url is not None
        self.settings, self.metrics, self.set_reason = settings, metrics, set_reason
        self.worker_id = settings.worker_id
        self.redis = connect(settings.redis_url)
        self.registry = Registry(self.redis, settings.node_ttl_s)
        self.runtime = InferenceRuntime(settings, metrics)
        self.started_at = time.time()
        self.loaded = False
        self.watch = RedisWatch(self.redis, settings.heartbeat_interval_s, self._on_redis)
        self._tasks: list[asyncio.Task[None]] = []
        self.sessions: SessionFactory | None = None
        self.jobs: JobRunner | None = None
        self.live: LiveHost | None = None

    def _on_redis(self, reason: str | None) -> None:
        if self.loaded:
            self.set_reason(reason)

    async def start(self) -> None:
        settings = self.settings
        await self.runtime.start()
        self.sessions = SessionFactory(settings, self.metrics)
        queue = RedisJobQueue(self.redis, settings.data_dir, self.worker_id, settings.job_claim_idle_s)
        self.jobs = JobRunner(queue, self.runtime, self.sessions, settings, self.metrics)
        make_feed = functools.partial(
            LocalFeed, runtime=self.runtime, sessions=self.sessions, settings=settings, metrics=self.metrics
        )
        self.live = LiveHost(self.redis, self.worker_id, make_feed, self.metrics)
        self.loaded = True
        self.set_reason(self.watch.reason)
        self._tasks = [
            asyncio.create_task(self.watch.run(), name="redis-watch"),
            asyncio.create_task(self._beat(queue), name="worker-heartbeat"),
        ]
        log.info("worker %s ready: %s on %s", self.worker_id, ", ".join(self.runtime.models), settings.device)

    async def stop(self) -> None:
        """Leave the registry, give running jobs back, close streams, stop the engines."""
        with contextlib.suppress(*TRANSIENT):
            await self.registry.withdraw(self.worker_id)
        for task in self._tasks:
            task.cancel()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.live is not None:
            await self.live.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sessions is not None:
            self.sessions.close()
        await self.runtime.stop()
        await self.redis.aclose()

    async def _beat(self, queue: RedisJobQueue) -> None:
        """Announce the worker, then take work; the heartbeat goes on every interval."""
        assert self.jobs is not None and self.live is not None
        backoff = Backoff()
        while True:
            try:
                await queue.ensure_group()
                break
            except TRANSIENT as exc:
                await backoff.wait("job queue", exc)
        await self._report()
        self._tasks += [
            asyncio.create_task(self.jobs.run(), name="jobs"),
            asyncio.create_task(self.live.run(), name="live-inbox"),
        ]
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                await self._report()
                await self.live.reap()
                backoff.reset()
            except TRANSIENT as exc:
                await backoff.wait("worker heartbeat", exc)

    async def _report(self) -> None:
        assert self.jobs is not None and self.live is not None
        report = snapshot(
            self.worker_id,
            self.settings,
            self.runtime,
            self.metrics,
            streams=len(self.live.streams),
            jobs=len(self.jobs.running),
            started_at=self.started_at,
        )
        await self.registry.publish(report)


def create_worker_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        state.metrics = ServiceMetrics()
        state.not_ready_reason = "loading models"
        worker = Worker(settings, state.metrics, lambda reason: setattr(state, "not_ready_reason", reason))
        state.runtime = worker.runtime
        try:
            await worker.start()
        except Exception as exc:  # not ready, with the reason on /readyz; the process stays up
            state.not_ready_reason = (
                str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            )
            log.error("not ready: %s", state.not_ready_reason)
        try:
            yield
        finally:
            state.not_ready_reason = "shutting down"
            await worker.stop()

    app = FastAPI(title="TDMI pose worker", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    for module in (health, metrics):
        app.include_router(module.router)
    return app
