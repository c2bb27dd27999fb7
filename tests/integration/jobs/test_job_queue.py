"""The job queue's contract, the same for SQLite and Redis: fencing, attempts, crashes, cancel,
delete, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tdmi.service.jobs.queue import CRASHED, Claim, JobQueue, NewJob
from tdmi.service.jobs.runner import exhausted_error, job_ended
from tests.integration.jobs.conftest import Backend

JOB = "ab" * 16


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def _queue_with_job(backend: Backend, owner: str | None = "key-a") -> JobQueue:
    queue = backend.open()
    upload = queue.data_dir / "uploads" / f"{JOB}.mp4"
    upload.write_bytes(b"video")
    await queue.create(NewJob(JOB, "tdmi-tiny", {"render": False}, upload, 10, owner))
    return queue


async def _take(queue: JobQueue) -> Claim:
    for _ in range(5):  # take waits about a second per call
        claim = await queue.take()
        if claim is not None:
            return claim
    raise AssertionError("nothing to take")


def test_a_job_is_created_queued_with_its_owner(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        record = await queue.get(JOB)
        assert record is not None
        assert (record.status, record.owner, record.attempts, record.deleted) == ("queued", "key-a", 0, False)
        assert record.input_path == queue.data_dir / "uploads" / f"{JOB}.mp4"
        assert await queue.queued() == 1
        assert await queue.get("cd" * 16) is None
        await backend.close(queue)

    _run(scenario)


def test_a_run_that_lost_its_job_cannot_finish_it(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        first = await _take(queue)
        assert await queue.start(first, "slow") is not None
        rescuer = await backend.after_crash(queue)  # the first run's process is taken for dead
        second = await _take(rescuer)
        assert second.job_id == JOB
        info = await rescuer.start(second, "rescuer")
        assert info is not None and (info.attempts, info.crashes, info.last_error) == (2, 1, CRASHED)
        assert not await rescuer.progress(first, 5, 10)
        assert not await rescuer.finish(first, video=False)
        assert await rescuer.progress(second, 5, 10)
        assert await rescuer.finish(second, video=False)
        record = await rescuer.get(JOB)
        assert record is not None and record.status == "done" and record.error is None
        assert record.result_path == rescuer.data_dir / second.result_name()
        assert not await rescuer.finish(second, video=False)  # done once
        await backend.close(rescuer)

    _run(scenario)


def test_errors_use_up_the_attempts_then_the_job_gives_up(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        for attempt in range(1, 3):
            claim = await _take(queue)
            info = await queue.start(claim, "w")
            assert info is not None and info.attempts == attempt and info.crashes == 0
            assert await queue.requeue(claim, f"RuntimeError: boom {attempt}")
            assert await queue.queued() == 1
        last = await _take(queue)
        info = await queue.start(last, "w")
        assert info is not None and info.attempts == 3
        assert exhausted_error(info) == ("gave_up", "gave up after 2 attempts; last: RuntimeError: boom 2")
        await backend.close(queue)

    _run(scenario)


def test_runs_that_killed_their_process_are_counted_before_the_next_run(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        for crash in range(2):
            claim = await _take(queue)
            info = await queue.start(claim, "w")  # the attempt is written before any work
            assert info is not None and info.crashes == crash
            queue = await backend.after_crash(queue)
        claim = await _take(queue)
        info = await queue.start(claim, "w")
        assert info is not None and (info.attempts, info.crashes) == (3, 2)
        assert exhausted_error(info) == ("crashed", "the job crashed the worker 2 times")
        assert await queue.fail(claim, exhausted_error(info)[1])
        record = await queue.get(JOB)
        assert record is not None and record.status == "failed"
        assert record.error == "the job crashed the worker 2 times"
        await backend.close(queue)

    _run(scenario)


def test_a_clean_stop_gives_the_job_back_without_using_an_attempt(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        for _ in range(3):
            claim = await _take(queue)
            info = await queue.start(claim, "w")
            assert info is not None and info.attempts == 1 and info.crashes == 0
            assert await queue.requeue(claim, charge="none")
        record = await queue.get(JOB)
        assert record is not None and record.status == "queued" and record.error is None
        assert record.attempts == 0
        await backend.close(queue)

    _run(scenario)


def test_a_transient_retry_uses_no_attempt_and_is_counted_apart(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        for retry in range(3):
            claim = await _take(queue)
            info = await queue.start(claim, "w")
            assert info is not None and (info.attempts, info.crashes, info.retries) == (1, 0, retry)
            assert await queue.requeue(claim, f"retry {retry + 1} of 20", charge="retry")
        record = await queue.get(JOB)
        assert record is not None and (record.status, record.attempts) == ("queued", 0)
        assert record.error == "retry 3 of 20"  # the job's status says why it waits
        await backend.close(queue)

    _run(scenario)


def test_cancel_stops_a_running_job_and_skips_a_queued_one(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        claim = await _take(queue)
        assert await queue.start(claim, "w") is not None
        assert await queue.cancel(JOB) == "running"
        assert await queue.cancel(JOB) is None  # already finished
        assert not await queue.progress(claim, 3, 10)  # the runner learns it must stop
        assert not await queue.finish(claim, video=False)  # does not resurrect
        await queue.release(claim)
        record = await queue.get(JOB)
        assert record is not None and record.status == "cancelled"

        other = "cd" * 16
        await queue.create(NewJob(other, "tdmi-tiny", {}, queue.data_dir / "uploads" / other, 5, None))
        assert await queue.cancel(other) == "queued"
        skipped = await _take(queue)
        assert skipped.job_id == other and await queue.start(skipped, "w") is None
        await queue.release(skipped)
        assert await queue.queued() == 0
        await backend.close(queue)

    _run(scenario)


def test_deleting_a_finished_job_forgets_it(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        claim = await _take(queue)
        assert await queue.start(claim, "w") is not None
        assert await queue.finish(claim, video=True)
        deletion = await queue.delete(JOB)
        assert deletion is not None and deletion.outcome == "deleted"
        assert deletion.record.files() == [
            queue.data_dir / "uploads" / f"{JOB}.mp4",
            queue.data_dir / claim.result_name(),
            queue.data_dir / claim.video_name(),
        ]
        assert await queue.get(JOB) is None
        assert await queue.delete(JOB) is None
        await backend.close(queue)

    _run(scenario)


def test_deleting_a_running_job_waits_for_its_run_to_stop(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        upload = queue.data_dir / "uploads" / f"{JOB}.mp4"
        claim = await _take(queue)
        assert await queue.start(claim, "w") is not None
        deletion = await queue.delete(JOB)
        assert deletion is not None and deletion.outcome == "deferred"
        record = await queue.get(JOB)
        assert record is not None and record.deleted and record.status == "cancelled"
        assert upload.exists()  # the run may still read it
        assert not await queue.progress(claim, 1, 10)
        await queue.release(claim)
        await job_ended(queue, JOB, keep_uploads=False)  # what the runner does after every run
        assert await queue.get(JOB) is None and not upload.exists()
        await backend.close(queue)

    _run(scenario)


def test_a_finished_job_loses_its_upload_unless_uploads_are_kept(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        upload = queue.data_dir / "uploads" / f"{JOB}.mp4"
        claim = await _take(queue)
        assert await queue.start(claim, "w") is not None
        await job_ended(queue, JOB, keep_uploads=False)
        assert upload.exists()  # still running
        assert await queue.fail(claim, "corrupt video")
        await job_ended(queue, JOB, keep_uploads=True)
        assert upload.exists()
        await job_ended(queue, JOB, keep_uploads=False)
        assert not upload.exists()
        record = await queue.get(JOB)
        assert record is not None and record.status == "failed"  # the job itself stays
        await backend.close(queue)

    _run(scenario)


def test_retention_takes_only_jobs_that_finished_before_the_cutoff(backend: Backend) -> None:
    async def scenario() -> None:
        queue = await _queue_with_job(backend)
        claim = await _take(queue)
        assert await queue.start(claim, "w") is not None
        assert await queue.finish(claim, video=False)
        running = "cd" * 16
        await queue.create(NewJob(running, "tdmi-tiny", {}, queue.data_dir / "uploads" / running, 5, None))
        now = time.time()
        assert await queue.finished_ids(now - 3600) == []
        assert await queue.delete(JOB, finished_before=now - 3600) is None  # too recent
        assert await queue.finished_ids(now + 1) == [JOB]
        assert await queue.delete(running, finished_before=now + 1) is None  # not finished
        gone = await queue.delete(JOB, finished_before=now + 1)
        assert gone is not None and gone.record.id == JOB
        assert await queue.get(JOB) is None and await queue.get(running) is not None
        await backend.close(queue)

    _run(scenario)


def test_job_ids_that_could_leave_the_data_dir_are_refused(backend: Backend, tmp_path: Path) -> None:
    async def scenario() -> None:
        queue = backend.open()
        for bad in ("../../etc/passwd", "AB" * 16, "a" * 31):
            try:
                await queue.create(NewJob(bad, "tdmi-tiny", {}, queue.data_dir / "uploads" / "x", 1, None))
            except ValueError as exc:
                assert "invalid job id" in str(exc)
            else:
                raise AssertionError(f"{bad!r} was accepted")
            assert await queue.get(bad) is None
        await backend.close(queue)

    _run(scenario)
