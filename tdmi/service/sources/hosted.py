"""Camera sources run by a worker of a cluster: taken by lease, their state and messages in Redis.

Every beat the worker renews its leases (a source whose lease it lost, or that was deleted, is
stopped here), writes each source's state for the API nodes, and takes one source that nobody
holds, if it has room and is the least-loaded worker that serves the source's model (a source
counts as a live stream, as pushed streams are placed): one a beat, so that its load is counted
before it takes another. A source that had run elsewhere before (its worker died)
starts with a ``reconnecting`` event, so its viewers know why results paused. Each source runs
as in embedded mode (``Source``), with one more viewer: the relay that copies its messages, from
a bounded queue, into the source's Redis stream.

A recorded source is written by the worker that runs it, into the shared data directory where
the cluster's job results live (``recording``), so any API node reads it back; a worker that
takes it over goes on writing the same recording. Frame ids go on across a move as well: run N
of a source numbers its frames from ``(N - 1) * RUN_FRAME_IDS + 1``, so a recording's frame ids
stay unique and increasing in capture order (a run would need years of frames to reach the next).
``tdmi_sources`` counts this worker's sources by state, as an embedded server's counts its own.

The overlay is drawn here only while an API node has watchers of it (``SourceBook``: a flag
with a TTL, looked at every beat): a watcher of the source's ``LiveOverlay`` then sends each
picture into the source's overlay stream in Redis, at most ``max_fps`` a second, as the
overlay draws for local watchers; when the flag lapses, the watcher leaves and drawing stops.
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
from tdmi.service.sources.overlay import LiveOverlay
from tdmi.service.sources.reader import CameraReader
from tdmi.service.sources.recording import RecordingMeta, Recordings
from tdmi.service.sources.source import NewReader, OpenSourceFeed, Source, SourceOptions, SourceParts
from tdmi.service.sources.url_policy import check_source_url
from tdmi.service.sources.viewers import Viewer

__all__ = ["HostedSources"]

log = logging.getLogger("tdmi.sources")

RUN_FRAME_IDS = 10**9  # frame ids each run of a source has to itself


@dataclass
class _Hosted:
    source: Source
    relay: Viewer
    relaying: asyncio.Task[None]
    overlay_sending: asyncio.Task[None] | None = None  # while an API node watches the overlay


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
        self.recordings = Recordings(settings, metrics)
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
        self._count_states()
        watched = await self.book.overlays_watched(list(self.running))
        for source_id, hosted in self.running.items():
            self._draw_overlay(source_id, hosted, source_id in watched)
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
                await self._start_or_fail(record, runs)
                self._count_states()
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

    def _count_states(self) -> None:
        self.parts.count_states(hosted.source for hosted in self.running.values())

    async def _start_or_fail(self, record: SourceRecord, runs: int) -> None:
        """Start it; if it cannot start here (refused by this worker's fence, a model this worker
        lacks, a fault of ours), say so in its state and let the lease lapse, for a retry."""
        try:
            await self._start(record, runs)
        except Exception as exc:
            failure = public_failure(exc, f"source {record.source_id} start")
            if record.source_id in self.running:
                await self._stop(record.source_id)
            await self.book.write_state(record.source_id, {"status": "failed", "failure": failure})

    async def _start(self, record: SourceRecord, runs: int) -> None:
        """Run ``runs`` of the source (more than 1: it ran elsewhere before and moved here)."""
        source_id = record.source_id
        if runs > 1:
            detail = f"the worker running this source stopped; it moved to worker {self.worker_id}"
            message = SourceStatusMessage(source_id=source_id, status="reconnecting", detail=detail)
            await self.book.publish(source_id, message.model_dump_json())
        # checked again here: this worker's settings and this moment's name resolution decide
        url = await asyncio.to_thread(check_source_url, record.url, self.settings)
        model = self.catalog.get(record.model)
        options = SourceOptions(record.owner, record.redacted, model.name, record.lookahead, record.max_fps)
        recorder = None
        if record.record:
            meta = RecordingMeta(
                source_id=source_id, owner=record.owner, model=model.name, skeleton=model.skeleton()
            )
            recorder = await self.recordings.writer(meta, run=runs)
        source = self.parts.build(
            source_id,
            options,
            url,
            on_state=self._count_states,
            recorder=recorder,
            first_frame_id=(runs - 1) * RUN_FRAME_IDS + 1,
        )
        relay = source.viewers.join()
        relaying = asyncio.create_task(self._relay(source_id, relay), name=f"source-{source_id}-relay")
        self.running[source_id] = _Hosted(source, relay, relaying)
        await source.start([(a, b) for a, b in model.skeleton().edges], self.settings)
        await self.book.write_state(source_id, self._state(source))
        log.info("source %s running on worker %s: %s (model %s)", source_id, self.worker_id, url, model.name)

    async def _relay(self, source_id: str, relay: Viewer) -> None:
        while (text := await relay.next()) is not None:
            await self.book.publish(source_id, text)

    def _draw_overlay(self, source_id: str, hosted: _Hosted, watched: bool) -> None:
        """Send the overlay while it is watched (a send that Redis ended starts again), not otherwise."""
        sending = hosted.overlay_sending is not None and not hosted.overlay_sending.done()
        overlay = hosted.source.overlay
        if watched and not sending and overlay is not None:
            hosted.overlay_sending = asyncio.create_task(
                self._send_overlay(source_id, overlay), name=f"source-{source_id}-overlay"
            )
        elif not watched and hosted.overlay_sending is not None:
            hosted.overlay_sending.cancel()  # the watcher leaves: nothing more is drawn
            hosted.overlay_sending = None

    async def _send_overlay(self, source_id: str, overlay: LiveOverlay) -> None:
        with contextlib.suppress(*TRANSIENT):  # Redis away: the next beat starts it again
            async for jpeg in overlay.frames():
                await self.book.publish_overlay(source_id, jpeg)

    async def _stop(self, source_id: str) -> None:
        """Stop it here without a word to its viewers: it was deleted (the API node told them),
        or it runs on another worker now."""
        hosted = self.running.pop(source_id)
        hosted.source.viewers.leave(hosted.relay)
        sending = [t for t in (hosted.relaying, hosted.overlay_sending) if t is not None]
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)
        await hosted.source.stop()
        self._count_states()

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
