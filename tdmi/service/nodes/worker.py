"""``tdmi worker --redis URL``: a worker node of a cluster.

It loads the models onto its device, takes video jobs from the queue, hosts the live streams
pinned to it, runs the camera sources it holds a lease on (``tdmi.service.sources.hosted``), and
reports its load every heartbeat. It also serves ``/healthz``, ``/readyz`` and ``/metrics`` over
HTTP, for container health checks and Prometheus. Its loops (Redis watch, heartbeat, job
consumer, live inbox, camera sources) survive any error (``tdmi.service.loops``): after a Redis
outage, even one that lost every key, the next heartbeat registers the worker again and the job
consumer creates the consumer group again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping

from tdmi.service.cluster.connection import TRANSIENT, RedisWatch, connect
from tdmi.service.cluster.jobs import RedisJobQueue
from tdmi.service.cluster.live_host import LiveHost
from tdmi.service.cluster.registry import Registry, snapshot
from tdmi.service.cluster.sources import SourceBook
from tdmi.service.config import Settings
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.listen import node_url
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.nodes.local_inference import LocalInference
from tdmi.service.nodes.node import Readiness
from tdmi.service.sources.hosted import HostedSources
from tdmi.service.streaming.feed import LocalFeed, errors_ignored

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
        self.watch = RedisWatch(self.redis, self._on_redis)
        self.loops = Loops(self.readiness.loop_trouble, settings.loop_stall_s)
        self.jobs: JobRunner | None = None
        self.live: LiveHost | None = None
        self.sources: HostedSources | None = None

    def _on_redis(self, reason: str | None) -> None:
        if self.loaded:
            self.readiness.set(reason)

    async def start(self) -> None:
        settings = self.settings
        await self.local.start()
        queue = RedisJobQueue(self.redis, settings.data_dir, self.worker_id, settings.job_claim_idle_s)
        self.jobs = JobRunner(queue, self.local.runtime, self.local.sessions, settings, self.metrics)
        self.live = LiveHost(self.redis, self.worker_id, self.local.open_feed, self.metrics)
        book = SourceBook(self.redis, settings.node_ttl_s)
        self.sources = HostedSources(
            book,
            self.registry,
            self.worker_id,
            settings,
            self.metrics,
            self.local.runtime,
            self._source_feed,
            streams=self._streams,
        )
        self.loaded = True
        self.readiness.set(self.watch.reason)
        every_s = settings.node_heartbeat_s
        self.loops.start("redis watch", self.watch.check, every_s)
        self.loops.start("worker heartbeat", self._beat, every_s)
        self.jobs.start(self.loops)
        self.loops.start("live inbox", self.live.run)
        self.loops.start("camera sources", self.sources.beat, every_s)
        log.info(
            "worker %s ready: %s on %s (health: %s/readyz)",
            self.worker_id,
            ", ".join(self.local.runtime.models),
            settings.device,
            node_url(settings, "worker"),
        )

    async def stop(self) -> None:
        """Leave the registry, give running jobs back, close streams, stop the engines."""
        await self.loops.stop()
        with contextlib.suppress(*TRANSIENT):
            await self.registry.withdraw(self.worker_id)
        if self.jobs is not None:
            await self.jobs.stop()
        if self.live is not None:
            await self.live.stop()
        if self.sources is not None:
            await self.sources.stop()
        await self.local.stop()
        await self.redis.aclose()

    def _streams(self) -> int:
        """Live streams on this worker: pinned ones and camera sources (both where new ones go)."""
        return (0 if self.live is None else len(self.live.streams)) + (
            0 if self.sources is None else len(self.sources.running)
        )

    def _source_feed(self, source_id: str) -> LocalFeed:
        """A camera source's feed: its frames come decoded and cannot be refused, so no error sink."""
        return self.local.open_feed(source_id, errors_ignored)

    def queue_depths(self) -> Mapping[str, int]:
        return self.local.runtime.queue_depths()

    async def _beat(self) -> None:
        """Say the worker is alive with its load (this also registers it again after Redis lost
        its keys), and close streams whose API node is gone."""
        assert self.jobs is not None and self.live is not None
        report = snapshot(
            self.worker_id,
            self.settings,
            self.local.runtime,
            self.metrics,
            streams=self._streams(),
            jobs=len(self.jobs.running),
            started_at=self.started_at,
        )
        await self.registry.publish(report)
        await self.live.reap()
