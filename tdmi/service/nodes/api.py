"""An API node of a cluster (``tdmi serve --redis``): no models, no device.

Video jobs go to the Redis job queue, live streams to a worker each, camera sources to Redis for
a worker to take (``tdmi.service.sources.remote``); ready while Redis answers and its loops (Redis
watch, heartbeat, live replies, camera sources, their results and overlays, retention sweeps)
run (``tdmi.service.loops``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

from tdmi.protocol import WorkersPublic
from tdmi.service.cluster import keys
from tdmi.service.cluster.catalog import ClusterCatalog
from tdmi.service.cluster.connection import TRANSIENT, RedisWatch, connect
from tdmi.service.cluster.jobs import RedisJobQueue
from tdmi.service.cluster.registry import Registry
from tdmi.service.cluster.remote_feed import LiveLink
from tdmi.service.cluster.sources import SourceBook
from tdmi.service.config import Settings
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.jobs.service import JobService
from tdmi.service.listen import node_url
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.nodes.node import LiveConnections, Readiness
from tdmi.service.sources.remote import RemoteSources
from tdmi.service.streaming.feed import ErrorSink, LiveFeed
from tdmi.service.weights.resolve import weights_store

__all__ = ["ApiNode"]

log = logging.getLogger("tdmi.cluster")


class ApiNode:
    """The public API of a cluster: jobs on the Redis queue, live streams forwarded to workers."""

    def __init__(self, settings: Settings):
        if settings.redis_url is None:
            raise ValueError("an API node of a cluster needs --redis URL (or TDMI_REDIS_URL)")
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.readiness = Readiness("connecting to redis")
        self.streams = LiveConnections()
        self.started_at = time.time()
        self.node_id = f"api-{socket.gethostname()}-{os.getpid()}"
        self.redis = connect(settings.redis_url)
        self.registry = Registry(self.redis, settings.node_ttl_s)
        self.queue = RedisJobQueue(self.redis, settings.data_dir, self.node_id, settings.job_claim_idle_s)
        self._catalog = ClusterCatalog(settings.models, weights_store(settings))
        self._jobs = JobService(self.queue, settings, self.metrics, self._catalog)
        # camera sources run on workers; their records, states and results are in Redis
        self.sources = RemoteSources(
            settings, self.metrics, self._catalog, SourceBook(self.redis, settings.node_ttl_s)
        )
        self.link = LiveLink(self.redis, self.node_id, self.registry, settings.node_heartbeat_s)
        self.watch = RedisWatch(self.redis, self.readiness.set)
        self.loops = Loops(self.readiness.loop_trouble, settings.loop_stall_s)

    async def start(self) -> None:
        await self.watch.check()
        every_s = self.settings.node_heartbeat_s
        self.loops.start("redis watch", self.watch.check, every_s)
        self.loops.start("live replies", self.link.run)
        self.loops.start("api heartbeat", self._beat, every_s)
        self.loops.start("camera sources", self.sources.refresh, every_s)
        self.loops.start("source results", self.sources.relay)
        self.loops.start("source overlays", self.sources.relay_overlays)
        self.sources.start(self.loops)
        await self.jobs.start(self.loops)
        url = node_url(self.settings, "serve")
        log.info(
            "API node %s of the cluster at %s ready: open %s/ (API docs: %s/docs)",
            self.node_id,
            self.settings.redis_url,
            url,
            url,
        )

    async def stop(self) -> None:
        """Stop taking jobs, close live streams (1012), stop the loops, leave the cluster."""
        await self._jobs.stop()
        await self.streams.close_all()
        await self.loops.stop()
        await self.sources.stop()
        with contextlib.suppress(*TRANSIENT):
            await self.redis.delete(keys.api_node(self.node_id), keys.replies(self.node_id))
        await self.redis.aclose()

    async def _beat(self) -> None:
        """Say this node is alive (workers keep its streams), and refresh the model catalog."""
        await self.redis.set(keys.api_node(self.node_id), "1", px=int(self.settings.node_ttl_s * 1000))
        self._catalog.update(await self.registry.live())

    @property
    def jobs(self) -> JobService:
        return self._jobs

    @property
    def catalog(self) -> ModelCatalog:
        return self._catalog

    def open_feed(self, stream_id: str, on_error: ErrorSink) -> LiveFeed:
        return self.link.feed(stream_id, on_error)

    async def workers(self) -> WorkersPublic:
        """Every live worker of the cluster (raises what an unreachable Redis raises)."""
        return WorkersPublic(mode="cluster", workers=await self.registry.live())

    def queue_depths(self) -> Mapping[str, int]:
        return {}  # the queues are the workers'; each reports its own
