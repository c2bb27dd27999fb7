"""Dynamic batching across streams: one bounded queue, fair round-robin, max batch or max wait.

A batch goes when it holds ``max_batch`` clips or when its oldest frame has waited
``max_delay_ms``. Frames are never split: one frame's persons ride in the same batch (a frame
with more persons than ``max_batch`` forms a batch of its own). The queue is bounded in frames:
a live frame that finds it full is refused (the session reports it as dropped), a video job's
frame waits for room, so decoding slows down instead of memory growing. Streams take turns, so a
long video job cannot starve a live feed.

Latency-aware: ``live_limit`` (e.g. ``BatchTimes.clips_within`` of the latency budget) caps a
batch that carries live frames at the clips the device is expected to run within the budget, and
its live frames go in first; a batch of video-job frames only still fills ``max_batch``, for
throughput. The cap never goes below one frame. Live frames stop going first once a job frame
has waited ``JOB_WAIT_LIMIT_S``: under a steady live load a capped batch has room for live
frames alone, and a job would otherwise never get a frame in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from tdmi.service.inference.work import Dropped, FrameWork

__all__ = ["JOB_WAIT_LIMIT_S", "Batcher"]

JOB_WAIT_LIMIT_S = 1.0


class Batcher:
    def __init__(
        self,
        max_batch: int,
        max_delay_ms: float,
        capacity: int,
        live_limit: Callable[[], int] | None = None,
    ):
        if max_batch < 1 or capacity < 1:
            raise ValueError("max_batch and capacity must be at least 1")
        self.max_batch = max_batch
        self.live_limit = live_limit  # clips a batch with live frames may hold (asked per batch)
        self.max_delay = max_delay_ms / 1000.0
        self.capacity = capacity
        self._streams: OrderedDict[str, deque[FrameWork]] = OrderedDict()
        self._count = 0
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return self._count

    async def put(self, work: FrameWork) -> bool:
        """Queue ``work``; a live frame is refused (False) when full, a job's frame waits for room."""
        async with self._changed:
            if work.live and self._count >= self.capacity:
                return False
            await self._changed.wait_for(lambda: self._count < self.capacity)
            self._streams.setdefault(work.stream_id, deque()).append(work)
            self._count += 1
            self._changed.notify_all()
            return True

    async def cancel_stream(self, stream_id: str, reason: str) -> int:
        """Drop every queued frame of a stream (it ended or was cancelled); returns how many."""
        async with self._changed:
            queue = self._streams.pop(stream_id, deque())
            for work in queue:
                work.resolve(Dropped(reason))
            self._count -= len(queue)
            self._changed.notify_all()
            return len(queue)

    async def next_batch(self) -> list[FrameWork]:
        """Wait for work, then collect until the batch is full or its oldest frame is due."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._count > 0)
            while True:
                self._drop_stale()
                oldest = self._oldest()
                if oldest is None:
                    await self._changed.wait_for(lambda: self._count > 0)
                    continue
                remaining = oldest + self.max_delay - time.monotonic()
                live = self._live_queued()
                limit = self._limit(live)
                if self._queued_clips() >= limit or remaining <= 0:
                    batch = self._take(limit, live and not self._job_waited_too_long())
                    self._changed.notify_all()
                    return batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=remaining)

    def _limit(self, live: bool) -> int:
        """Clips this batch may hold: ``max_batch``, or less when it carries live frames."""
        if not live or self.live_limit is None:
            return self.max_batch
        return max(1, min(self.max_batch, self.live_limit()))

    def _take(self, limit: int, live_first: bool) -> list[FrameWork]:
        """Frames in round-robin order over streams until ``limit`` clips (live streams first)."""
        batch: list[FrameWork] = []
        if live_first:
            self._fill(batch, limit, live_only=True)
        self._fill(batch, limit, live_only=False)
        return batch

    def _fill(self, batch: list[FrameWork], limit: int, live_only: bool) -> None:
        clips = sum(w.size for w in batch)
        while self._streams and clips < limit:
            progressed = False
            for stream_id in list(self._streams):
                queue = self._streams[stream_id]
                work = queue[0]
                if (live_only and not work.live) or (batch and clips + work.size > limit):
                    continue
                queue.popleft()
                self._count -= 1
                batch.append(work)
                clips += work.size
                progressed = True
                self._streams.move_to_end(stream_id)  # this stream goes last next time
                if not queue:
                    del self._streams[stream_id]
                if clips >= limit:
                    return
            if not progressed:
                return

    def _drop_stale(self) -> None:
        now, before = time.monotonic(), self._count
        for stream_id in list(self._streams):
            queue = self._streams[stream_id]
            while queue and queue[0].deadline is not None and queue[0].deadline < now:
                queue.popleft().resolve(Dropped("stale: waited longer than the live latency budget"))
                self._count -= 1
            if not queue:
                del self._streams[stream_id]
        if self._count < before:
            self._changed.notify_all()

    def _oldest(self) -> float | None:
        return min((q[0].enqueued_at for q in self._streams.values() if q), default=None)

    def _job_waited_too_long(self) -> bool:
        started = min((w.enqueued_at for q in self._streams.values() for w in q if not w.live), default=None)
        return started is not None and time.monotonic() - started > JOB_WAIT_LIMIT_S

    def _live_queued(self) -> bool:
        return any(q[0].live for q in self._streams.values() if q)

    def _queued_clips(self) -> int:
        return sum(w.size for q in self._streams.values() for w in q)
