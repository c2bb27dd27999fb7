"""What the routes need of a node's camera sources, wherever they run: here (``SourceService``)
or on a cluster's workers, seen from an API node (``RemoteSources``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from tdmi.protocol import JobResultPublic
from tdmi.protocol.sources import SourceCreate, SourceStatus
from tdmi.protocol.stream import ReadyMessage
from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.overlay import SharedPicture
from tdmi.service.sources.source import SourceOptions, SourceStats
from tdmi.service.sources.viewers import Viewers

__all__ = ["SourceView", "Sources"]


class SourceView(Protocol):
    """One source as answered and watched."""

    source_id: str
    options: SourceOptions
    created_at: datetime
    viewers: Viewers

    @property
    def ready(self) -> ReadyMessage | None:
        """The feed's answer to the source's config; None while it is starting."""
        ...

    @property
    def failure(self) -> str | None:
        """A fault of ours that ended one of the source's tasks, with its log reference."""
        ...

    @property
    def overlay(self) -> SharedPicture | None:
        """The live overlay's pictures; None while the source is starting."""
        ...

    def status(self) -> SourceStatus: ...

    def stats(self) -> SourceStats: ...

    def status_message(self) -> str: ...


class Sources(Protocol):
    """A node's sources: add, list, get, delete; the caller's own only."""

    settings: Settings
    metrics: ServiceMetrics

    async def add(self, request: SourceCreate, caller: Caller) -> SourceView: ...

    def list(self, caller: Caller) -> Sequence[SourceView]: ...

    def get(self, source_id: str, caller: Caller) -> SourceView | None: ...

    async def delete(self, source_id: str, caller: Caller) -> SourceView | None: ...

    async def stop(self) -> None: ...

    async def results(self, source_id: str, caller: Caller, start: float, end: float) -> JobResultPublic:
        """A source's recorded results between two wall-clock times."""
        ...
