"""``tdmi worker --redis URL``: a worker node of a cluster.

It loads the models onto its device, takes video jobs from the queue, hosts the live streams
pinned to it, and reports its load every heartbeat. It also serves ``/healthz``, ``/readyz`` and
``/metrics`` over HTTP, for container health checks and Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from tdmi.service.cluster.connection import TRANSIENT, Backoff, RedisWatch, connect
from tdmi.service.cluster.jobs import RedisJobQueue
from tdmi.service.cluster.live_host import LiveHost
from tdmi.service.cluster.registry import Registry, snapshot
from tdmi.service.config import Settings
from tdmi.service.embedded import LocalInference
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.node import Readiness

__all__ = ["WorkerNode"]

log = logging.getLogger("tdmi.cluster.worker")


class WorkerNode:
    """Models on one device; video jobs and pinned live streams from Redis; its load reported."""

    def __init__(self, settings: Settings):
        if settings.redis_url is None:
            raise ValueError("tdmi worker needs --redis URL (or TDMI_REDIS_URL)")
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.readiness = Readiness("loading models")
        self.worker_id = settings.worker_id
        self.redis = connect(settings.redis_url)
        self.registry = Registry(self.redis, settings.node_ttl_s)
        self.local = LocalInference(settings, self.metrics)
        self.started_at = time.time()
        self.loaded = False
        self.watch = RedisWatch(self.redis, settings.heartbeat_interval_s, self._on_redis)
        self._tasks: list[asyncio.Task[None]] = []
        self.jobs: JobRunner | None = None
        self.live: LiveHost | None = None

    def _on_redis(self, reason: str | None) -> None:
        if self.loaded:
            self.readiness.set(reason)

    async def start(self) -> None:
        settings = self.settings
        await self.local.start()
        queue = RedisJobQueue(self.redis, settings.data_dir, self.worker_id, settings.job_claim_idle_s)
        self.jobs = JobRunner(queue, self.local.runtime, self.local.sessions, settings, self.metrics)
        self.live = LiveHost(self.redis, self.worker_id, self.local.open_feed, self.metrics)
        self.loaded = True
        self.readiness.set(self.watch.reason)
        self._tasks = [
            asyncio.create_task(self.watch.run(), name="redis-watch"),
            asyncio.create_task(self._beat(queue), name="worker-heartbeat"),
        ]
        log.info(
            "worker %s ready: %s on %s", self.worker_id, ", ".join(self.local.runtime.models), settings.device
        )

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
        await self.local.stop()
        await self.redis.aclose()

    def queue_depths(self) -> Mapping[str, int]:
        return self.local.runtime.queue_depths()

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
            self.local.runtime,
            self.metrics,
            streams=len(self.live.streams),
            jobs=len(self.jobs.running),
            started_at=self.started_at,
        )
        await self.registry.publish(report)
