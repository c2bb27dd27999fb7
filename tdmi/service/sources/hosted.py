"""Camera sources run by a worker of a cluster: taken by lease, their state and messages in Redis.

Every beat the worker renews its leases (a source whose lease it lost, or that was deleted, is
stopped here), writes each source's state for the API nodes, and takes one source that nobody
holds, if it has room and is the least-loaded worker that serves the source's model (a source
counts as a live stream, as pushed streams are placed): one a beat, so that its load is counted
before it takes another. A source that had run elsewhere before (its worker died)
starts with a ``reconnecting`` event, so its viewers know why results paused. Each source runs
as in embedded mode (``Source``), with one more viewer: the relay that copies its messages, from
a bounded queue, into the source's Redis stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tdmi.protocol import WorkerPublic
from tdmi.protocol.sources import SourceStatusMessage
from tdmi.service.cluster.connection import TRANSIENT
from tdmi.service.cluster.registry import Registry, least_loaded
from tdmi.service.cluster.sources import SourceBook, SourceRecord
from tdmi.service.config import Settings
from tdmi.service.errors import public_failure
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.reader import CameraReader
from tdmi.service.sources.source import NewReader, OpenSourceFeed, Source, SourceOptions, SourceParts
from tdmi.service.sources.url_policy import check_source_url
from tdmi.service.sources.viewers import Viewer

__all__ = ["HostedSources"]

log = logging.getLogger("tdmi.sources")


@dataclass
class _Hosted:
    source: Source
    relay: Viewer
    relaying: asyncio.Task[None]


class HostedSources:
    """The sources this worker runs; ``beat`` is one step of its loop, on the event loop."""

    def __init__(
        self,
        book: SourceBook,
        registry: Registry,
        worker_id: str,
        settings: Settings,
        metrics: ServiceMetrics,
        catalog: ModelCatalog,
        open_feed: OpenSourceFeed,
        streams: Callable[[], int],
        new_reader: NewReader = CameraReader,
    ):
        self.book, self.worker_id, self.settings, self.metrics = book, worker_id, settings, metrics
        self.catalog = catalog
        self.parts = SourceParts(settings, metrics, open_feed, new_reader)
        self.registry = registry
        self.running: dict[str, _Hosted] = {}
        self.streams = streams  # the live streams this worker runs now, these sources included

    async def beat(self) -> None:
        """Renew the leases, stop what is no longer this worker's, report the rest, take one more."""
        lost = await self.book.renew(self.worker_id, list(self.running))
        records = await self.book.records()
        wanted = {r.source_id for r in records}
        for source_id in list(self.running):
            if source_id in lost or source_id not in wanted:
                why = "lease lost" if source_id in wanted else "deleted"
                await self._stop(source_id)
                if source_id not in wanted:
                    await self.book.retire(source_id)
                log.info("source %s stopped on this worker (%s)", source_id, why)
        for source_id, hosted in self.running.items():
            await self.book.write_state(source_id, self._state(hosted.source))
        if len(self.running) >= self.settings.max_sources:
            return
        workers = [self._now(w) for w in await self.registry.live()]
        for record in records:
            if record.source_id in self.running:
                continue
            chosen = least_loaded(workers, record.model)
            if chosen is None or chosen.worker_id != self.worker_id:
                continue  # a worker less loaded (or the only one with its model) takes it
            if runs := await self.book.take(record.source_id, self.worker_id):
                await self._start_or_fail(record, moved=runs > 1)
                return

    def _now(self, report: WorkerPublic) -> WorkerPublic:
        """This worker's own load as it is now (its report is up to a beat old), others' as reported."""
        if report.worker_id != self.worker_id:
            return report
        return report.model_copy(update={"streams": self.streams()})

    async def stop(self) -> None:
        """The worker stops: its sources are handed on at once (their leases released)."""
        with contextlib.suppress(*TRANSIENT):  # Redis away: the leases expire by themselves
            await self.book.release(self.worker_id, list(self.running))
        for source_id in list(self.running):
            await self._stop(source_id)

    async def _start_or_fail(self, record: SourceRecord, moved: bool) -> None:
        """Start it; if it cannot start here (refused by this worker's fence, a model this worker
        lacks, a fault of ours), say so in its state and let the lease lapse, for a retry."""
        try:
            await self._start(record, moved)
        except Exception as exc:
            failure = public_failure(exc, f"source {record.source_id} start")
            if record.source_id in self.running:
                await self._stop(record.source_id)
            await self.book.write_state(record.source_id, {"status": "failed", "failure": failure})

    async def _start(self, record: SourceRecord, moved: bool) -> None:
        source_id = record.source_id
        if moved:
            detail = f"the worker running this source stopped; it moved to worker {self.worker_id}"
            message = SourceStatusMessage(source_id=source_id, status="reconnecting", detail=detail)
            await self.book.publish(source_id, message.model_dump_json())
        # checked again here: this worker's settings and this moment's name resolution decide
        url = await asyncio.to_thread(check_source_url, record.url, self.settings)
        model = self.catalog.get(record.model)
        options = SourceOptions(record.owner, record.redacted, model.name, record.lookahead, record.max_fps)
        source = self.parts.build(source_id, options, url)
        relay = source.viewers.join()
        relaying = asyncio.create_task(self._relay(source_id, relay), name=f"source-{source_id}-relay")
        self.running[source_id] = _Hosted(source, relay, relaying)
        await source.start([(a, b) for a, b in model.skeleton().edges], self.settings)
        await self.book.write_state(source_id, self._state(source))
        log.info("source %s running on worker %s: %s (model %s)", source_id, self.worker_id, url, model.name)

    async def _relay(self, source_id: str, relay: Viewer) -> None:
        while (text := await relay.next()) is not None:
            await self.book.publish(source_id, text)

    async def _stop(self, source_id: str) -> None:
        """Stop it here without a word to its viewers: it was deleted (the API node told them),
        or it runs on another worker now."""
        hosted = self.running.pop(source_id)
        hosted.source.viewers.leave(hosted.relay)
        hosted.relaying.cancel()
        await asyncio.gather(hosted.relaying, return_exceptions=True)
        await hosted.source.stop()

    @staticmethod
    def _state(source: Source) -> dict[str, object]:
        """What the API nodes show of the source (``GET /v1/sources/{id}``)."""
        stats = source.stats()
        return {
            "status": stats.status,
            "ready": None if source.ready is None else source.ready.model_dump(mode="json"),
            "failure": source.failure,
            "reader": dataclasses.asdict(stats.reader),
            "frames_processed": stats.frames_processed,
            "frames_dropped": stats.frames_dropped,
            "processing_fps": stats.processing_fps,
        }
