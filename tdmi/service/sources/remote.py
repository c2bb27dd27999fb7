"""Camera sources seen from an API node of a cluster: they run on workers (``hosted.py``).

The API node keeps nothing a restart would lose: a source is its record in Redis
(``cluster/sources.py``), its state is what its worker wrote there last, and its results are the
worker's messages in a capped Redis stream. Two loops mirror that for the routes: ``refresh``
reads the records and states every beat (the routes answer from the mirror, without a Redis call
each), and ``relay`` reads the messages of the sources someone here watches into their viewers'
bounded queues, so a slow viewer loses results as in embedded mode and never slows the others.
The overlay is drawn by the worker only while watched: ``relay_overlays`` keeps the source's
watched flag up while someone here watches it and shows each picture the worker sends to this
node's watchers (one picture per source held here). A recorded source's files are written by
its worker into the shared data directory; any API node reads them back (``recording``) and
sweeps them by the jobs' retention.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from tdmi.protocol import JobResultPublic
from tdmi.protocol.sources import SourceCreate, SourceStatus, SourceStatusMessage
from tdmi.protocol.stream import ReadyMessage
from tdmi.service.auth import Caller
from tdmi.service.cluster.sources import SourceBook, SourceRecord
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.overlay import SharedPicture
from tdmi.service.sources.reader import ReaderState, ReaderStats
from tdmi.service.sources.recording import Recordings
from tdmi.service.sources.source import SourceOptions, SourceStats
from tdmi.service.sources.url_policy import SourceRefused, check_source_url
from tdmi.service.sources.viewers import Viewers

__all__ = ["RemoteSource", "RemoteSources"]

log = logging.getLogger("tdmi.sources")

RELAY_BLOCK_MS = 500  # longest wait for messages before the relay looks for new viewers


class RemoteSource:
    """A source running on some worker: its record, the state its worker wrote, this node's viewers."""

    def __init__(self, record: SourceRecord, metrics: ServiceMetrics, settings: Settings):
        self.record = record
        self.source_id = record.source_id
        self.options = SourceOptions(
            owner=record.owner,
            url=record.redacted,
            model=record.model,
            lookahead=record.lookahead,
            max_fps=record.max_fps,
        )
        self.created_at = datetime.fromtimestamp(record.created_at, UTC)
        self.viewers = Viewers(metrics.source_viewer_dropped.inc)
        self.overlay = SharedPicture()  # drawn on the worker, relayed while watched
        self.reported: dict[str, Any] | None = None  # its worker's state; None: no worker runs it now
        self.stopped = False
        self._default_lookahead = settings.lookahead or 0

    @property
    def ready(self) -> ReadyMessage | None:
        """The worker's answer to the feed's config; until a worker has one, what was asked."""
        if self.reported is not None and self.reported.get("ready"):
            return ReadyMessage.model_validate(self.reported["ready"])
        lookahead = self.record.lookahead if self.record.lookahead is not None else self._default_lookahead
        return ReadyMessage(
            stream_id=self.source_id, model=self.record.model, lookahead=lookahead, ack_window=0, joints=[]
        )

    @property
    def failure(self) -> str | None:
        return None if self.reported is None else cast(str | None, self.reported.get("failure"))

    def status(self) -> SourceStatus:
        if self.stopped:
            return "stopped"
        if self.reported is None:  # not taken yet, or its worker died and the lease has not expired
            return "connecting"
        return cast(SourceStatus, self.reported["status"])

    def stats(self) -> SourceStats:
        state = self.reported or {}
        reader = state.get("reader")
        return SourceStats(
            status=self.status(),
            reader=ReaderStats(**{**reader, "state": ReaderState(reader["state"])})
            if reader
            else ReaderStats(ReaderState.CONNECTING, 0, 0, None, None, None, None, 0, None),
            frames_processed=state.get("frames_processed", 0),
            frames_dropped=state.get("frames_dropped", 0),
            processing_fps=state.get("processing_fps"),
            viewers=len(self.viewers),
        )

    def status_message(self) -> str:
        status = self.status()
        detail = self.stats().reader.last_error if status in ("reconnecting", "failed") else None
        return SourceStatusMessage(source_id=self.source_id, status=status, detail=detail).model_dump_json()


class RemoteSources:
    """The cluster's sources for the routes of one API node; runs on the event loop."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, catalog: ModelCatalog, book: SourceBook):
        self.settings, self.metrics, self.catalog, self.book = settings, metrics, catalog, book
        self.recordings = Recordings(settings, metrics)
        self._sources: dict[str, RemoteSource] = {}
        self._after: dict[str, str] = {}  # source id -> the last message relayed to its viewers
        self._overlay_after: dict[str, str] = {}  # source id -> the last overlay picture shown
        self._flagged: dict[str, float] = {}  # source id -> when its watched flag was last set

    async def add(self, request: SourceCreate, caller: Caller) -> RemoteSource:
        """Check as embedded mode does and write the record: a worker takes it at its next beat."""
        if not (caller.admin or caller.owner is None or self.settings.source_keys == "all"):
            raise ApiError(
                403, "forbidden", "adding a camera source needs an admin key (TDMI_ADMIN_API_KEYS)"
            )
        await self._check_room()
        try:  # resolves the host: off the event loop (the worker checks it again before it connects)
            url = await asyncio.to_thread(check_source_url, request.url, self.settings)
        except SourceRefused as exc:
            raise ApiError(403, "source_refused", str(exc)) from None
        model = self.catalog.get(request.model)  # UnknownModelError: 422
        await self._check_room()
        record = SourceRecord(
            source_id=uuid.uuid4().hex,
            owner=caller.owner,
            url=url.reveal(),
            redacted=url.redacted,
            model=model.name,
            lookahead=request.lookahead,
            max_fps=request.max_fps,
            created_at=time.time(),
            record=request.record,
        )
        await self.book.add(record)
        source = self._sources[record.source_id] = RemoteSource(record, self.metrics, self.settings)
        log.info("source %s added: %s (model %s), for a worker to take", record.source_id, url, model.name)
        return source

    async def _check_room(self) -> None:
        if await self.book.count() >= self.settings.max_sources:
            raise ApiError(429, "too_many_sources", f"limit is {self.settings.max_sources}")

    def list(self, caller: Caller) -> list[RemoteSource]:
        return [s for s in self._sources.values() if caller.sees(s.options.owner)]

    def get(self, source_id: str, caller: Caller) -> RemoteSource | None:
        source = self._sources.get(source_id)
        return source if source is not None and caller.sees(source.options.owner) else None

    async def delete(self, source_id: str, caller: Caller) -> RemoteSource | None:
        """Forget it in Redis (its worker stops it within a beat); every viewer gets ``stopped``."""
        source = self.get(source_id, caller)
        if source is None:
            return None
        source.stopped = True
        if not await self.book.remove(source_id, source.status_message()):
            return None  # deleted meanwhile by another request
        self._end(source_id)
        log.info("source %s deleted", source_id)
        return source

    async def results(self, source_id: str, caller: Caller, start: float, end: float) -> JobResultPublic:
        """A source's recorded results from the shared data directory, whichever worker wrote them."""
        return await self.recordings.results(source_id, caller, start, end)

    def start(self, loops: Loops) -> None:
        """The recordings' retention sweep, as often as the jobs' (none when jobs are kept forever)."""
        if self.settings.job_retention_hours > 0:
            loops.start("recording sweep", self.sweep, self.settings.job_sweep_interval_s)

    async def sweep(self, now: float | None = None) -> int:
        """Remove the recording files older than the jobs' retention; the folders of sources that
        record now stay (from Redis: this node's mirror may not be filled yet)."""
        recording = {r.source_id for r in await self.book.records() if r.record}
        return await self.recordings.sweep(recording, now)

    async def stop(self) -> None:
        """The API node stops; the sources go on running on their workers."""
        for source_id in list(self._sources):
            self._forget(source_id)

    async def refresh(self) -> None:
        """The mirror brought up to Redis: sources added or deleted elsewhere, their states now."""
        records = {r.source_id: r for r in await self.book.records()}
        for source_id in set(self._sources) - set(records):  # deleted through another API node
            self._sources[source_id].stopped = True
            self._sources[source_id].viewers.publish(
                self._sources[source_id].status_message(), droppable=False
            )
            self._forget(source_id)
        for source_id, record in records.items():
            if source_id not in self._sources:
                self._sources[source_id] = RemoteSource(record, self.metrics, self.settings)
        states = await self.book.states(list(records))
        for source_id, source in self._sources.items():
            source.reported = states.get(source_id)

    async def relay(self) -> None:
        """One pass of the relay loop: the new messages of watched sources into their viewers,
        in order (waits up to ``RELAY_BLOCK_MS`` for some)."""
        watched = [i for i, s in self._sources.items() if len(s.viewers)]
        for source_id in set(self._after) - set(watched):
            del self._after[source_id]
        for source_id in watched:
            if source_id not in self._after:  # a new viewer starts at the current frame
                self._after[source_id] = await self.book.last_message_id(source_id)
        if not watched:
            await asyncio.sleep(RELAY_BLOCK_MS / 1000)
            return
        for source_id, message_id, text in await self.book.read(dict(self._after), RELAY_BLOCK_MS):
            self._after[source_id] = message_id
            source = self._sources.get(source_id)
            if source is not None:
                source.viewers.publish(text, droppable=json.loads(text)["type"] == "result")

    async def relay_overlays(self) -> None:
        """One pass of the overlay relay: the watched flag kept up for each source whose overlay
        someone here watches, and the newest picture its worker sent shown to them (waits up to
        ``RELAY_BLOCK_MS`` for one)."""
        watched = [i for i, s in self._sources.items() if s.overlay.watchers]
        for source_id in set(self._flagged) - set(watched):  # its flag lapses by itself
            self._flagged.pop(source_id)
            self._overlay_after.pop(source_id, None)
        now = time.monotonic()
        for source_id in watched:
            if now - self._flagged.get(source_id, -math.inf) >= self.book.ttl_ms / 3000:
                await self.book.watch_overlay(source_id)
                self._flagged[source_id] = now
            if source_id not in self._overlay_after:  # from the next picture: the newest may be old
                self._overlay_after[source_id] = await self.book.last_overlay_id(source_id)
        if not watched:
            await asyncio.sleep(RELAY_BLOCK_MS / 1000)
            return
        newest: dict[str, bytes] = {}
        for source_id, picture_id, jpeg in await self.book.read_overlays(
            dict(self._overlay_after), RELAY_BLOCK_MS
        ):
            self._overlay_after[source_id], newest[source_id] = picture_id, jpeg
        for source_id, jpeg in newest.items():
            if (source := self._sources.get(source_id)) is not None:
                source.overlay.show(jpeg)

    def _end(self, source_id: str) -> None:
        """A deleted source: its viewers here are told ``stopped``, then their streams end."""
        source = self._sources.get(source_id)
        if source is not None:
            source.stopped = True
            source.viewers.publish(source.status_message(), droppable=False)
        self._forget(source_id)

    def _forget(self, source_id: str) -> None:
        source = self._sources.pop(source_id, None)
        self._after.pop(source_id, None)
        self._flagged.pop(source_id, None)
        self._overlay_after.pop(source_id, None)
        if source is not None:
            source.viewers.close_all()
            source.overlay.end()
