"""The batcher with plain frames and no server: size and time triggers, fairness, bounds, drops."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tdmi.service.inference.batcher import JOB_WAIT_LIMIT_S, Batcher, LatencyBudget
from tdmi.service.inference.work import Dropped, FrameWork


def _work(
    stream: str, index: int, persons: int = 1, live: bool = False, deadline: float | None = None
) -> FrameWork:
    return FrameWork(
        stream_id=stream,
        frame_index=index,
        images={},
        clip=[0],
        boxes=np.zeros((persons, 4), dtype=np.float32),
        live=live,
        deadline=deadline,
    )


def run(coro):
    return asyncio.run(coro)


def test_a_full_batch_goes_at_once_and_frames_are_never_split() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=4, max_delay_ms=10_000, capacity=16)
        for i in range(3):
            await batcher.put(_work("a", i, persons=2))
        start = time.monotonic()
        batch = await batcher.next_batch()
        assert time.monotonic() - start < 5  # far below the 10 s delay: it went because it was full
        assert [w.frame_index for w in batch] == [0, 1]
        assert sum(w.size for w in batch) == 4
        assert len(batcher) == 1

        big = Batcher(max_batch=4, max_delay_ms=10_000, capacity=16)
        await big.put(_work("a", 0, persons=6))
        await big.put(_work("a", 1, persons=1))
        assert [w.frame_index for w in await big.next_batch()] == [0]  # 6 persons stay together

    run(scenario())


def test_a_partial_batch_waits_for_the_delay_of_its_oldest_frame() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_delay_ms=80, capacity=16)
        await batcher.put(_work("a", 0))
        start = time.monotonic()
        batch = await batcher.next_batch()
        assert time.monotonic() - start >= 0.07
        assert len(batch) == 1

    run(scenario())


def test_streams_take_turns() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=3, max_delay_ms=0, capacity=32)
        for i in range(10):
            await batcher.put(_work("busy", i))
        await batcher.put(_work("quiet", 0))
        await batcher.put(_work("other", 0))
        batch = await batcher.next_batch()
        assert sorted(w.stream_id for w in batch) == ["busy", "other", "quiet"]
        assert [w.frame_index for w in batch if w.stream_id == "busy"] == [0]  # in order within a stream

    run(scenario())


def test_a_full_queue_refuses_live_frames_and_holds_back_job_frames() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=1, max_delay_ms=0, capacity=2)
        assert await batcher.put(_work("job", 0))
        assert await batcher.put(_work("job", 1))
        assert not await batcher.put(_work("live", 0, live=True))
        waiting = asyncio.create_task(batcher.put(_work("job", 2)))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the video job slows down instead of the queue growing
        await batcher.next_batch()
        assert await asyncio.wait_for(waiting, 1)
        assert len(batcher) == 2

    run(scenario())


def test_stale_live_frames_are_dropped_and_cancelled_streams_answered() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=4, max_delay_ms=0, capacity=8)
        stale = _work("live", 0, live=True, deadline=time.monotonic() - 1)
        fresh = _work("live", 1, live=True, deadline=time.monotonic() + 60)
        await batcher.put(stale)
        await batcher.put(fresh)
        batch = await batcher.next_batch()
        assert batch == [fresh]
        outcome = await stale.future
        assert isinstance(outcome, Dropped) and outcome.reason.startswith("stale")

        queued = _work("gone", 0)
        await batcher.put(queued)
        assert await batcher.cancel_stream("gone", "stream closed") == 1
        assert isinstance(await queued.future, Dropped)
        assert len(batcher) == 0

    run(scenario())


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(max_batch=0, max_delay_ms=1, capacity=1)


def _budget(seconds: float, per_clip: float) -> LatencyBudget:
    """A budget over a made-up device whose batch of n clips takes n x ``per_clip`` seconds."""
    return LatencyBudget(seconds, lambda clips: clips * per_clip)


def test_the_budget_allows_the_clips_that_fit_and_all_of_them_once_it_is_lost() -> None:
    budget = _budget(0.1, 0.02)
    assert budget.clips(waited=0.0, first=1, max_batch=16) == 5
    assert budget.clips(waited=0.05, first=1, max_batch=16) == 2
    assert budget.clips(waited=0.0, first=1, max_batch=3) == 3
    assert budget.clips(waited=0.0, first=4, max_batch=16) == 5  # never fewer than the oldest frame
    # the oldest frame cannot make it even alone: a backlog, the batch fills for throughput
    assert budget.clips(waited=0.09, first=1, max_batch=16) == 16
    assert budget.clips(waited=0.0, first=20, max_batch=16) == 20
    assert LatencyBudget(0.1, lambda clips: None).clips(0.0, 1, 16) == 16  # nothing measured yet
    assert budget.due(oldest=10.0, clips=3) == pytest.approx(10.04, abs=1e-9)


def test_a_batch_with_live_frames_is_capped_and_a_jobs_only_batch_is_not() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_delay_ms=10_000, capacity=32, budget=_budget(1.0, 0.3))
        for i in range(8):
            await batcher.put(_work("job", i))
        jobs_only = await batcher.next_batch()  # no live frame queued: the full max_batch
        assert len(jobs_only) == 8

        for i in range(4):
            await batcher.put(_work("job", 10 + i))
        await batcher.put(_work("live", 0, persons=2, live=True))
        capped = await batcher.next_batch()  # 6 clips queued, 3 fit: goes at once, live first
        assert [(w.stream_id, w.frame_index) for w in capped] == [("live", 0), ("job", 10)]
        assert len(batcher) == 3

    run(scenario())


def test_a_job_frame_that_waited_too_long_goes_before_live_frames() -> None:
    """A steady live load fills every capped batch; a job's frame must still get in."""

    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_delay_ms=0, capacity=32, budget=_budget(1.0, 0.6))
        await batcher.put(_work("job", 0))
        await batcher.put(_work("live", 0, live=True))
        assert [w.stream_id for w in await batcher.next_batch()] == ["live"]  # the job is fresh
        await batcher.put(_work("live", 1, live=True))
        (queued,) = [w for q in batcher._streams.values() for w in q if not w.live]
        queued.enqueued_at -= JOB_WAIT_LIMIT_S + 0.1  # as if it had waited that long
        assert [w.stream_id for w in await batcher.next_batch()] == ["job"]
        assert [w.stream_id for w in await batcher.next_batch()] == ["live"]

    run(scenario())


def test_the_budget_never_splits_or_refuses_a_frame() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_delay_ms=10_000, capacity=8, budget=_budget(1.0, 0.19))
        await batcher.put(_work("live", 0, persons=5, live=True))
        await batcher.put(_work("live", 1, persons=1, live=True))
        first = await batcher.next_batch()
        assert [w.frame_index for w in first] == [0]  # 5 clips fit the budget, 6 would not
        assert [w.frame_index for w in await batcher.next_batch()] == [1]

    run(scenario())


def test_live_streams_take_turns_within_a_capped_batch() -> None:
    async def scenario() -> None:
        batcher = Batcher(max_batch=16, max_delay_ms=0, capacity=32, budget=_budget(1.0, 0.45))
        for i in range(3):
            await batcher.put(_work("cam-a", i, live=True))
        await batcher.put(_work("cam-b", 0, live=True))
        batch = await batcher.next_batch()
        assert sorted((w.stream_id, w.frame_index) for w in batch) == [("cam-a", 0), ("cam-b", 0)]

    run(scenario())


def test_a_backlog_fills_the_batch_to_catch_up() -> None:
    """Once the oldest live frame cannot make its budget, the batch takes all it may hold."""

    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_delay_ms=10_000, capacity=32, budget=_budget(1.0, 0.3))
        for stream in ("cam-a", "cam-b", "cam-c"):
            for i in range(2):
                await batcher.put(_work(stream, i, live=True))
        assert len(await batcher.next_batch()) == 3  # fresh: 3 clips fit the second
        for stream in ("cam-a", "cam-b", "cam-c"):
            await batcher.put(_work(stream, 2, live=True))
        oldest = min((q[0] for q in batcher._streams.values()), key=lambda w: w.enqueued_at)
        oldest.enqueued_at -= 0.8  # as if it had waited that long: 0.3 s of one clip no longer fits
        assert len(await batcher.next_batch()) == 6

    run(scenario())


def test_a_partial_batch_goes_in_time_for_its_oldest_live_frame() -> None:
    """A long max delay does not hold a live frame past the moment its batch must run."""

    async def scenario() -> None:
        batcher = Batcher(max_batch=8, max_delay_ms=10_000, capacity=32, budget=_budget(0.3, 0.1 / 8))
        await batcher.put(_work("live", 0, live=True))
        start = time.monotonic()
        batch = await batcher.next_batch()
        waited = time.monotonic() - start
        assert len(batch) == 1
        assert 0.2 <= waited < 5  # due 0.3 - 0.0125 s after it was queued, not after 10 s

    run(scenario())
