"""Fan-out of one source's messages to its viewers, each with a bounded queue of its own.

A message is encoded once by the source and the same text is queued for every viewer. A viewer
that reads too slowly loses its oldest queued results (counted, and told with one ``dropped``
notice where they were): the source never waits for a viewer, so one slow
screen cannot hold back the camera or the other screens. Status events are never dropped (there
are few, and a viewer must not miss that the camera is back). A new viewer starts with what is
published after it joined: the current frame on, never a backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tdmi.protocol.sources import ViewerDroppedMessage

__all__ = ["Viewer", "Viewers"]

# results a viewer may have queued: about a second of a camera at 30 fps
VIEWER_QUEUE = 32


@dataclass
class _Entry:
    text: str | None  # None: a gap where ``lost`` results were dropped
    droppable: bool
    lost: int = 0


class Viewer:
    """One viewer's queue of encoded messages; ``next`` gives them in order."""

    def __init__(self, limit: int, on_dropped: Callable[[int], None]):
        self._limit, self._on_dropped = limit, on_dropped
        self._queue: deque[_Entry] = deque()
        self._results = 0  # droppable entries queued
        self._changed = asyncio.Event()
        self._closed = False
        self.dropped = 0  # results dropped in all

    def offer(self, text: str, droppable: bool) -> None:
        """Queue ``text``; when full, the oldest droppable message makes room, and a gap in its
        place says so."""
        if self._closed:
            return
        if droppable and self._results >= self._limit:
            self._drop_oldest()
        self._queue.append(_Entry(text, droppable))
        self._results += droppable
        self._changed.set()

    def _drop_oldest(self) -> None:
        oldest = next(i for i, entry in enumerate(self._queue) if entry.droppable)
        del self._queue[oldest]
        self._results -= 1
        if oldest and self._queue[oldest - 1].text is None:
            self._queue[oldest - 1].lost += 1
        else:
            self._queue.insert(oldest, _Entry(None, droppable=False, lost=1))
        self.dropped += 1
        self._on_dropped(1)

    def close(self, *, discard: bool = False) -> None:
        """No more messages: ``next`` ends once the queued ones are taken, or at once with
        ``discard`` (the viewer has left: nobody is there to take them)."""
        self._closed = True
        if discard:
            self._queue.clear()
            self._results = 0
        self._changed.set()

    async def next(self) -> str | None:
        """The next message to send (a ``dropped`` notice where results were lost); None once closed."""
        while not self._queue:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        entry = self._queue.popleft()
        if entry.text is None:
            return ViewerDroppedMessage(count=entry.lost).model_dump_json()
        self._results -= entry.droppable
        return entry.text


class Viewers:
    """The viewers of one source. Runs on the event loop only."""

    def __init__(self, on_dropped: Callable[[int], None], limit: int = VIEWER_QUEUE):
        self._limit, self._on_dropped = limit, on_dropped
        self._viewers: set[Viewer] = set()

    def __len__(self) -> int:
        return len(self._viewers)

    def join(self, first: str | None = None) -> Viewer:
        """A new viewer, whose first message is ``first`` (the source's state now)."""
        viewer = Viewer(self._limit, self._on_dropped)
        if first is not None:
            viewer.offer(first, droppable=False)
        self._viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        viewer.close()
        self._viewers.discard(viewer)

    def publish(self, text: str, droppable: bool = True) -> None:
        """The same encoded message to every viewer; never waits."""
        for viewer in self._viewers:
            viewer.offer(text, droppable)

    def close_all(self) -> None:
        """The source is gone: each viewer gets what it has queued, then its stream ends."""
        for viewer in self._viewers:
            viewer.close()
        self._viewers.clear()
