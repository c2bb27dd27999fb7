"""``tdmi serve`` without Redis: the embedded node, its own worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from tdmi.protocol import WorkersPublic
from tdmi.service.cluster.registry import snapshot
from tdmi.service.config import Settings
from tdmi.service.data_dir_lock import hold_data_dir, release_data_dir
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.jobs.leftovers import sweep_leftovers
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.jobs.service import JobService
from tdmi.service.jobs.sqlite import SqliteJobQueue
from tdmi.service.listen import node_url
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.nodes.local_inference import LocalInference
from tdmi.service.nodes.node import LiveConnections, Readiness
from tdmi.service.sources.registry import SourceService
from tdmi.service.streaming.feed import ErrorSink, LocalFeed, errors_ignored

__all__ = ["EmbeddedNode"]

log = logging.getLogger("tdmi.service")


class EmbeddedNode:
    """Models, video jobs (SQLite and local files) and live feeds, all in this process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.readiness = Readiness("loading models")
        self.streams = LiveConnections()
        self.started_at = time.time()
        self.local = LocalInference(settings, self.metrics)
        self._jobs: JobService | None = None
        self.sources: SourceService | None = None
        self._owns_data_dir = False

    async def start(self) -> None:
        self._owns_data_dir = hold_data_dir(self.settings.data_dir)
        await self.local.start()
        queue = SqliteJobQueue(self.settings.data_dir)
        await sweep_leftovers(queue, self.settings.data_dir, grace_s=0)  # nothing else writes there
        runner = JobRunner(queue, self.local.runtime, self.local.sessions, self.settings, self.metrics)
        self._jobs = JobService(queue, self.settings, self.metrics, self.local.runtime, runner)
        loops = Loops(self.readiness.loop_trouble, self.settings.loop_stall_s)
        await self._jobs.start(loops)
        self.sources = SourceService(self.settings, self.metrics, self.local.runtime, self._source_feed)
        self.sources.start(loops)
        self.readiness.set(None)
        url = node_url(self.settings, "serve")
        log.info("ready: open %s/ (API docs: %s/docs)", url, url)

    async def stop(self) -> None:
        """Close live streams (1012) and camera sources, requeue running jobs, stop the engines."""
        await self.streams.close_all()
        if self.sources is not None:
            await self.sources.stop()
        if self._jobs is not None:
            await self._jobs.stop()
        await self.local.stop()
        if self._owns_data_dir:
            release_data_dir(self.settings.data_dir)

    @property
    def jobs(self) -> JobService:
        if self._jobs is None:
            raise RuntimeError("the job system has not started")
        return self._jobs

    @property
    def catalog(self) -> ModelCatalog:
        return self.local.runtime

    def open_feed(self, stream_id: str, on_error: ErrorSink) -> LocalFeed:
        return self.local.open_feed(stream_id, on_error)

    def _source_feed(self, source_id: str) -> LocalFeed:
        """A camera source's feed: its frames come decoded and cannot be refused, so no error sink."""
        return self.local.open_feed(source_id, errors_ignored)

    async def workers(self) -> WorkersPublic:
        """This process is its own (and only) worker."""
        own = snapshot(
            "embedded",
            self.settings,
            self.local.runtime,
            self.metrics,
            streams=len(self.streams),
            jobs=len(self._jobs.runner.running) if self._jobs is not None and self._jobs.runner else 0,
            started_at=self.started_at,
        )
        return WorkersPublic(mode="embedded", workers=[own])

    def queue_depths(self) -> Mapping[str, int]:
        return self.local.runtime.queue_depths()
