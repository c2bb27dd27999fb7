"""The cluster parts of an API node (``tdmi serve --redis``): no models, no device."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from tdmi.service.cluster import keys
from tdmi.service.cluster.catalog import ClusterCatalog
from tdmi.service.cluster.connection import TRANSIENT, Backoff, RedisWatch, connect
from tdmi.service.cluster.jobs import RedisJobQueue
from tdmi.service.cluster.registry import Registry
from tdmi.service.cluster.remote_feed import LiveLink
from tdmi.service.config import Settings
from tdmi.service.jobs.service import JobService
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.weights.resolve import weights_store

__all__ = ["ApiNode"]

log = logging.getLogger("tdmi.cluster")


class ApiNode:
    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, on_readiness: Callable[[str | None], None]
    ):
        assert settings.redis_url is not None
        self.settings = settings
        self.node_id = f"api-{socket.gethostname()}-{os.getpid()}"
        self.redis = connect(settings.redis_url)
        self.registry = Registry(self.redis, settings.node_ttl_s)
        self.queue = RedisJobQueue(self.redis, settings.data_dir, self.node_id, settings.job_claim_idle_s)
        self.jobs = JobService(self.queue, settings, metrics)
        self.catalog = ClusterCatalog(settings.models, weights_store(settings))
        self.link = LiveLink(self.redis, self.node_id, self.registry, settings.heartbeat_interval_s)
        self.watch = RedisWatch(self.redis, settings.heartbeat_interval_s, on_readiness)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.jobs.start()
        self._tasks = [
            asyncio.create_task(self.watch.run(), name="redis-watch"),
            asyncio.create_task(self.link.run(), name="live-replies"),
            asyncio.create_task(self._beat(), name="api-heartbeat"),
        ]

    async def stop(self) -> None:
        await self.jobs.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*TRANSIENT):
            await self.redis.delete(keys.api_node(self.node_id), keys.replies(self.node_id))
        await self.redis.aclose()

    async def _beat(self) -> None:
        """Say this node is alive (workers keep its streams), and refresh the model catalog."""
        backoff, grouped = Backoff(), False
        ttl_ms = int(self.settings.node_ttl_s * 1000)
        while True:
            try:
                if not grouped:
                    await self.queue.ensure_group()
                    grouped = True
                await self.redis.set(keys.api_node(self.node_id), "1", px=ttl_ms)
                self.catalog.update(await self.registry.live())
                backoff.reset()
            except TRANSIENT as exc:
                await backoff.wait("api heartbeat", exc)
                continue
            await asyncio.sleep(self.settings.heartbeat_interval_s)
