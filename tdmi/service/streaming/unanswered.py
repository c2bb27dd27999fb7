"""Frames handed on and not yet answered, oldest first: the backlog of a live stream.

A stream's frames are answered in the order they arrived, and a frame refused with an error gets
no answer at all; so an answer for frame f settles f and every frame that arrived before it.
Frame ids are the client's (any u64, repeats allowed): frames are matched by arrival position
and equality, never ordered by comparing ids, so that no choice of ids hides a frame from the
count that bounds the stream's memory.
"""

from __future__ import annotations

import time
from collections import deque

__all__ = ["UnansweredFrames"]


class UnansweredFrames:
    def __init__(self) -> None:
        self._frames: deque[tuple[int, float]] = deque()  # (frame id, monotonic arrival time)

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame_id: int) -> None:
        self._frames.append((frame_id, time.monotonic()))

    def answer(self, frame_id: int) -> float | None:
        """Settle ``frame_id`` and the frames before it; its arrival time, or None when it is not
        waiting (already settled by an error, or forgotten by ``clear``)."""
        position = self._find(frame_id)
        if position is None:
            return None
        for _ in range(position):
            self._frames.popleft()
        return self._frames.popleft()[1]

    def discard(self, frame_id: int) -> None:
        """Forget the oldest waiting frame with this id (refused with an error: no answer comes)."""
        position = self._find(frame_id)
        if position is not None:
            del self._frames[position]

    def clear(self) -> list[int]:
        """Forget every frame; their ids, oldest first."""
        ids = [frame_id for frame_id, _ in self._frames]
        self._frames.clear()
        return ids

    def _find(self, frame_id: int) -> int | None:
        return next((i for i, (waiting, _) in enumerate(self._frames) if waiting == frame_id), None)
