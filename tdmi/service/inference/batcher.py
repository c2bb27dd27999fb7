"""Dynamic batching across streams: one bounded queue, fair round-robin, max batch or max wait.

A batch goes when it holds ``max_batch`` clips or when its oldest frame has waited
``max_delay_ms``. Frames are never split: one frame's persons ride in the same batch (a frame
with more persons than ``max_batch`` forms a batch of its own). The queue is bounded in frames:
a live frame that finds it full is refused (the session reports it as dropped), a video job's
frame waits for room, so decoding slows down instead of memory growing. Streams take turns, so a
long video job cannot starve a live feed.

Deadline-aware (``LatencyBudget``): a live frame should have its keypoints within the budget of
entering the queue. A batch carrying live frames closes when one more frame would make its
oldest live frame miss that, given what the device is expected to take for the batch (measured
per batch size as the service runs), and its live frames go in first. When the oldest live frame
cannot make its budget even alone (a backlog: the device fell behind), its budget is lost
whatever the batch holds, so the batch fills ``max_batch`` instead: bigger batches cost less per
clip, the queue drains, and the frames behind it make theirs again. Batches grow with the load
and shrink with it, as in Triton's queue delay and Clipper's adaptive batch size, where a fixed
cap would hold a slow device to one frame per batch at any load. A batch of video-job frames only
fills ``max_batch``. Live frames stop going first once a job frame has waited
``JOB_WAIT_LIMIT_S``: under a steady live load, batches would otherwise have room for live
frames alone and a job would never get a frame in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from tdmi.service.inference.work import Dropped, FrameWork

__all__ = ["JOB_WAIT_LIMIT_S", "Batcher", "LatencyBudget"]

JOB_WAIT_LIMIT_S = 1.0


@dataclass(frozen=True)
class LatencyBudget:
    """Seconds a live frame may take from the queue to its keypoints, and the model's expected
    seconds for a batch of n clips (e.g. ``BatchTimes.estimate``; None: not measured yet)."""

    seconds: float
    cost: Callable[[int], float | None]

    def clips(self, waited: float, first: int, max_batch: int) -> int:
        """The clips a batch may hold when its oldest live frame (``first`` clips) has waited
        ``waited`` seconds: the most that still let it make the budget, ``max_batch`` when even
        that frame alone cannot (or nothing is measured yet); never fewer than ``first``."""
        slack = self.seconds - waited
        alone = self.cost(first)
        if alone is None or alone > slack:
            return max(first, max_batch)
        fitting = first
        for clips in range(first + 1, max_batch + 1):
            seconds = self.cost(clips)
            if seconds is None or seconds > slack:
                break
            fitting = clips
        return fitting

    def due(self, oldest: float, clips: int) -> float:
        """When a batch of ``clips`` must go for a live frame queued at ``oldest`` to make it."""
        return oldest + self.seconds - (self.cost(clips) or 0.0)


class Batcher:
    def __init__(
        self,
        max_batch: int,
        max_delay_ms: float,
        capacity: int,
        budget: LatencyBudget | None = None,
    ):
        if max_batch < 1 or capacity < 1:
            raise ValueError("max_batch and capacity must be at least 1")
        self.max_batch = max_batch
        self.budget = budget  # None: live frames batch like a job's
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
                now = time.monotonic()
                live = self._oldest_live()
                limit, due = self._limit(live, now), oldest + self.max_delay
                queued = self._queued_clips()
                if live is not None and self.budget is not None:
                    due = min(due, self.budget.due(live.enqueued_at, min(queued, limit)))
                remaining = due - now
                if queued >= limit or remaining <= 0:
                    batch = self._take(limit, live is not None and not self._job_waited_too_long())
                    self._changed.notify_all()
                    return batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=remaining)

    def _limit(self, live: FrameWork | None, now: float) -> int:
        """Clips this batch may hold: ``max_batch``, or what the oldest live frame's budget allows."""
        if live is None or self.budget is None:
            return self.max_batch
        return self.budget.clips(now - live.enqueued_at, live.size, self.max_batch)

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

    def _oldest_live(self) -> FrameWork | None:
        """The live frame queued first (a stream's frames queue in order: its head is its oldest)."""
        heads = [q[0] for q in self._streams.values() if q and q[0].live]
        return min(heads, key=lambda w: w.enqueued_at, default=None)

    def _queued_clips(self) -> int:
        return sum(w.size for q in self._streams.values() for w in q)
