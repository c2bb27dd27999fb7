"""One typed node: what the lifespan and the routes need of a running process, whatever its role.

The role is chosen once, at start-up (``tdmi.service.main``); routes get the node through
``tdmi.service.deps`` and never ask which one they have (the roles: ``tdmi.service.nodes``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Protocol

from fastapi import WebSocket

from tdmi.protocol import WorkersPublic
from tdmi.service.config import Settings
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.jobs.service import JobService
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.contract import Sources
from tdmi.service.streaming.feed import ErrorSink, LiveFeed

__all__ = ["LiveConnection", "LiveConnections", "Node", "Readiness", "ServingNode"]


class Readiness:
    """Why the node cannot serve now (``reason``; None when ready), and whether it still takes work.

    Two sources: the node's state (loading, Redis lost, shutting down), and its long-lived loops,
    each of which says while it cannot run (``tdmi.service.loops``).
    """

    def __init__(self, reason: str) -> None:
        self._state: str | None = reason
        self._loops: dict[str, str] = {}
        self.accepting = True

    @property
    def reason(self) -> str | None:
        if self._state is not None:
            return self._state
        return "; ".join(self._loops.values()) or None

    def set(self, reason: str | None) -> None:
        """A new state (models loaded, Redis lost or back); a node shutting down stays so."""
        if self.accepting:
            self._state = reason

    def loop_trouble(self, loop: str, reason: str | None) -> None:
        """The loop ``loop`` cannot run (``reason``), or runs again (None)."""
        if reason is None:
            self._loops.pop(loop, None)
        else:
            self._loops[loop] = reason

    def failed(self, exc: BaseException) -> None:
        """Start-up failed: not ready with the reason on ``/readyz``; the process stays up."""
        self.set(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")

    def shut_down(self) -> None:
        self._state, self.accepting = "shutting down", False


class LiveConnection(Protocol):
    """A live stream's WebSocket, as the node holds it."""

    ws: WebSocket


class LiveConnections:
    """The live streams a node serves; told to come back later (1012) when it stops."""

    def __init__(self) -> None:
        self._open: dict[str, LiveConnection] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, stream_id: str, connection: LiveConnection) -> None:
        self._open[stream_id] = connection

    def discard(self, stream_id: str) -> None:
        self._open.pop(stream_id, None)

    async def close_all(self) -> None:
        for connection in list(self._open.values()):
            with contextlib.suppress(Exception):  # a peer that is already gone
                await asyncio.wait_for(connection.ws.close(1012, "server shutting down"), timeout=2)


class Node(Protocol):
    """Any node: started and stopped by the one lifespan, probed by /healthz, /readyz, /metrics."""

    settings: Settings
    metrics: ServiceMetrics
    readiness: Readiness

    async def start(self) -> None:
        """Load and connect; raises when the node cannot serve (the lifespan tells /readyz why)."""
        ...

    async def stop(self) -> None:
        """Give work back and release everything, whatever ``start`` reached."""
        ...

    def queue_depths(self) -> Mapping[str, int]:
        """Frames waiting for a batch, by model (none on a node without models)."""
        ...


class ServingNode(Node, Protocol):
    """A node that answers the public API (embedded, or an API node of a cluster)."""

    streams: LiveConnections

    @property
    def sources(self) -> Sources | None:
        """The camera sources, run here or on the cluster's workers; None before the node started."""
        ...

    @property
    def jobs(self) -> JobService:
        """The job system; only asked of a ready node."""
        ...

    @property
    def catalog(self) -> ModelCatalog:
        """The models requests may name."""
        ...

    def open_feed(self, stream_id: str, on_error: ErrorSink) -> LiveFeed:
        """A new live stream's feed: served here, or forwarded to a worker."""
        ...

    async def workers(self) -> WorkersPublic:
        """The inference workers behind this node and their load."""
        ...
