"""The job state machine in a real Redis: fencing tokens, bounded attempts, cancel, clean release."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tdmi.protocol import WorkerModelPublic, WorkerPublic
from tdmi.service.cluster import keys
from tdmi.service.cluster.connection import connect
from tdmi.service.cluster.jobs import JobBoard, Run
from tdmi.service.cluster.registry import least_loaded
from tests.helpers.redis_server import RedisServer

pytestmark = pytest.mark.redis

_databases = itertools.count(12)  # conftest's clusters count up from 1


@pytest.fixture
def board_url(redis_server: RedisServer) -> str:
    url = redis_server.url(next(_databases))
    redis_server.client(int(url.rsplit("/", 1)[1])).flushdb()
    return url


async def _board(url: str, tmp_path: Path) -> tuple[JobBoard, str]:
    board = JobBoard(connect(url), tmp_path)
    await board.ensure_group()
    upload = tmp_path / "uploads" / "a.mp4"
    upload.write_bytes(b"video")
    job_id = "ab" * 16
    await board.create(job_id, "tdmi-tiny", {"render": False}, upload, 10)
    return board, job_id


async def _take(board: JobBoard, worker: str, min_idle_ms: int = 0) -> str:
    """The next run for ``worker``: a new entry, else one claimed from another worker."""
    answer = await board.redis.xreadgroup(keys.JOBS_GROUP, worker, {keys.JOBS_STREAM: ">"}, count=1)
    if answer:
        return answer[0][1][0][0].decode()
    _, claimed, _ = await board.redis.xautoclaim(keys.JOBS_STREAM, keys.JOBS_GROUP, worker, min_idle_ms)
    return claimed[0][0].decode()


def test_a_run_that_lost_its_job_cannot_finish_it(board_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        board, job_id = await _board(board_url, tmp_path)
        first = Run(job_id, await _take(board, "slow"), "token-slow")
        assert await board.start(first, "slow", max_attempts=3) == "ok"
        second = Run(job_id, await _take(board, "rescuer"), "token-rescuer")  # claimed over
        assert second.entry_id == first.entry_id
        assert await board.start(second, "rescuer", max_attempts=3) == "ok"
        assert not await board.progress(first, 5, 10)
        assert not await board.finish(first, result=first.result_name())
        assert await board.progress(second, 5, 10)
        assert await board.finish(second, result=second.result_name())
        record = await board.get(job_id)
        assert record is not None and record.status == "done"
        assert record.result_path == tmp_path / f"results/{job_id}.token-rescuer.json"
        assert (await board.redis.xpending(keys.JOBS_STREAM, keys.JOBS_GROUP))["pending"] == 0
        assert not await board.finish(second, result="again")  # done once
        await board.redis.aclose()

    asyncio.run(scenario())


def test_a_job_that_keeps_failing_fails_after_max_attempts(board_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        board, job_id = await _board(board_url, tmp_path)
        for attempt in range(2):
            run = Run(job_id, await _take(board, "w"), f"t{attempt}")
            assert await board.start(run, "w", max_attempts=2) == "ok"
            assert await board.requeue(run, f"RuntimeError: boom {attempt}")
            assert await board.queued() == 1
        last = Run(job_id, await _take(board, "w"), "t2")
        assert await board.start(last, "w", max_attempts=2) == "exhausted"
        await board.ack(last.entry_id)
        record = await board.get(job_id)
        assert record is not None and record.status == "failed"
        assert record.error == "gave up after 2 attempts; last: RuntimeError: boom 1"
        assert await board.queued() == 0
        await board.redis.aclose()

    asyncio.run(scenario())


def test_a_clean_stop_gives_the_job_back_without_using_an_attempt(board_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        board, job_id = await _board(board_url, tmp_path)
        for i in range(3):
            run = Run(job_id, await _take(board, "w"), f"t{i}")
            assert await board.start(run, "w", max_attempts=1) == "ok"
            assert await board.requeue(run, counts=False)
        record = await board.get(job_id)
        assert record is not None and record.status == "queued" and record.error is None
        await board.redis.aclose()

    asyncio.run(scenario())


def test_cancel_stops_a_running_job_and_skips_a_queued_one(board_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        board, job_id = await _board(board_url, tmp_path)
        run = Run(job_id, await _take(board, "w"), "t")
        assert await board.start(run, "w", max_attempts=3) == "ok"
        assert await board.cancel(job_id)
        assert not await board.cancel(job_id)  # already finished
        assert not await board.progress(run, 3, 10)  # the worker learns it must stop
        assert not await board.finish(run, result="r")  # acknowledges, does not resurrect
        record = await board.get(job_id)
        assert record is not None and record.status == "cancelled"
        assert (await board.redis.xpending(keys.JOBS_STREAM, keys.JOBS_GROUP))["pending"] == 0
        await board.redis.aclose()

    asyncio.run(scenario())


def _worker(worker_id: str, streams: int, depth: int = 0, model: str = "tdmi-tiny") -> WorkerPublic:
    return WorkerPublic(
        worker_id=worker_id,
        device="cpu",
        backend="torch",
        models=[WorkerModelPublic(name=model, checkpoint=None)],
        streams=streams,
        max_streams=2,
        jobs=0,
        max_jobs=1,
        queue_depth=depth,
        frames=0,
        batches={},
        started_at=0.0,
        heartbeat_at=0.0,
    )


def test_a_new_stream_goes_to_the_least_loaded_worker_that_serves_its_model() -> None:
    workers = [
        _worker("a", 1),
        _worker("b", 0, depth=3),
        _worker("c", 0),
        _worker("d", 0, model="hrnet-tiny"),
    ]
    assert least_loaded(workers, "tdmi-tiny").worker_id == "c"  # type: ignore[union-attr]
    assert least_loaded(workers, "tdmi-tiny", frozenset({"c"})).worker_id == "b"  # type: ignore[union-attr]
    assert least_loaded(workers, "hrnet-tiny").worker_id == "d"  # type: ignore[union-attr]
    assert least_loaded([_worker("full", 2)], None) is None  # at max_streams
    assert least_loaded(workers, "unknown") is None
