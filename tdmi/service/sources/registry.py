"""The camera sources of this node, as the routes see them: add, list, get, delete.

A source belongs to the API key that added it, as a job does (``Caller``): another key's source is
answered as unknown, except to an admin key. Adding is for admin keys only unless
``TDMI_SOURCE_KEYS=all`` (in open mode, without keys, everyone is the one caller and may add);
``TDMI_MAX_SOURCES`` bounds them (429) and the URL is checked before anything connects
(``url_policy``: a refused URL is 403, saying nothing of whether the host exists). A source added
with ``record: true`` writes its results to the data directory (``recording``); they are read back
by time range, also after the source is deleted, until the jobs' retention sweeps them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from tdmi.protocol import JobResultPublic
from tdmi.protocol.sources import SourceCreate
from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.reader import CameraReader
from tdmi.service.sources.recording import RecordingMeta, Recordings
from tdmi.service.sources.source import NewReader, OpenSourceFeed, Source, SourceOptions, SourceParts
from tdmi.service.sources.url_policy import SourceRefused, check_source_url
from tdmi.service.streaming.feed import FeedConfigError

__all__ = ["SourceService"]

log = logging.getLogger("tdmi.sources")

# source id -> a new live feed for it, served on this node


class SourceService:
    """The sources of one node; runs on the event loop."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        catalog: ModelCatalog,
        open_feed: OpenSourceFeed,
        new_reader: NewReader = CameraReader,
    ):
        self.settings, self.metrics, self.catalog = settings, metrics, catalog
        self.parts = SourceParts(settings, metrics, open_feed, new_reader)
        self._sources: dict[str, Source] = {}
        self.recordings = Recordings(settings, metrics)
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sources)

    def may_add(self, caller: Caller) -> bool:
        return caller.admin or caller.owner is None or self.settings.source_keys == "all"

    async def add(self, request: SourceCreate, caller: Caller) -> Source:
        """Check, connect the feed and start reading: answers before the camera is live."""
        if not self.may_add(caller):
            raise ApiError(
                403, "forbidden", "adding a camera source needs an admin key (TDMI_ADMIN_API_KEYS)"
            )
        self._check_room()
        try:  # resolves the host: off the event loop
            url = await asyncio.to_thread(check_source_url, request.url, self.settings)
        except SourceRefused as exc:
            raise ApiError(403, "source_refused", str(exc)) from None
        model = self.catalog.get(request.model)  # UnknownModelError: 422
        options = SourceOptions(
            owner=caller.owner,
            url=url.redacted,
            model=model.name,
            lookahead=request.lookahead,
            max_fps=request.max_fps,
        )
        self._check_room()  # again: other requests may have taken the room while the URL was checked
        source_id = uuid.uuid4().hex
        recorder = None
        if request.record:
            meta = RecordingMeta(
                source_id=source_id, owner=caller.owner, model=model.name, skeleton=model.skeleton()
            )
            recorder = await self.recordings.writer(meta)
        source = self.parts.build(source_id, options, url, on_state=self.count_states, recorder=recorder)
        self._sources[source_id] = source  # the slot is taken while the feed opens
        try:
            await source.start([(a, b) for a, b in model.skeleton().edges], self.settings)
        except FeedConfigError as exc:
            await self._forget(source_id)
            raise ApiError(422, exc.kind, str(exc)) from None
        except BaseException:
            await self._forget(source_id)
            raise
        log.info("source %s added: %s (model %s)", source_id, options.url, model.name)
        self.count_states()
        return source

    def _check_room(self) -> None:
        if len(self._sources) >= self.settings.max_sources:
            raise ApiError(429, "too_many_sources", f"limit is {self.settings.max_sources}")

    def list(self, caller: Caller) -> list[Source]:
        """The caller's sources (all, for an admin), those still starting left out."""
        return [s for s in self._sources.values() if s.ready is not None and caller.sees(s.options.owner)]

    def get(self, source_id: str, caller: Caller) -> Source | None:
        source = self._sources.get(source_id)
        if source is None or source.ready is None or not caller.sees(source.options.owner):
            return None
        return source

    async def delete(self, source_id: str, caller: Caller) -> Source | None:
        """Stop the source and free what it held; None if this caller has no such source."""
        if self.get(source_id, caller) is None:
            return None
        source = await self._forget(source_id)
        if source is not None:
            log.info("source %s deleted (%d frames processed)", source_id, source.processed)
        return source

    async def stop(self) -> None:
        """The node stops: every source with it."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await asyncio.gather(*(self._forget(i) for i in list(self._sources)), return_exceptions=True)

    def count_states(self) -> None:
        """``tdmi_sources`` by state, as they are now."""
        self.parts.count_states(self._sources.values())

    async def _forget(self, source_id: str) -> Source | None:
        source = self._sources.pop(source_id, None)
        if source is not None:
            await source.stop()
        self.count_states()
        return source

    def start(self, loops: Loops) -> None:
        """The recordings' retention sweep, as often as the jobs' (none when jobs are kept forever)."""
        if self.settings.job_retention_hours > 0:
            self._sweeper = loops.start("recording sweep", self.sweep, self.settings.job_sweep_interval_s)

    async def sweep(self, now: float | None = None) -> int:
        """Remove the recording files older than the jobs' retention (how many went)."""
        return await self.recordings.sweep({i for i, s in self._sources.items() if s.recorder}, now)

    async def results(self, source_id: str, caller: Caller, start: float, end: float) -> JobResultPublic:
        """A source's recorded results, whether it runs or was deleted (``Recordings.results``)."""
        return await self.recordings.results(source_id, caller, start, end)
