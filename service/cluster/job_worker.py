"""A worker's side of the job queue: take runs, renew them while they work, finish them once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tdmi.service.cluster import keys
from tdmi.service.cluster.connection import BLOCK_MS, TRANSIENT, Backoff
from tdmi.service.cluster.jobs import JobBoard, Run
from tdmi.service.config import Settings
from tdmi.service.errors import public_failure
from tdmi.service.jobs.processor import JobProcessor, ProgressReport
from tdmi.service.jobs.store import write_json_atomic
from tdmi.service.media import MediaError
from tdmi.service.metrics import ServiceMetrics

__all__ = ["JobConsumer"]

log = logging.getLogger("tdmi.cluster.jobs")


class JobConsumer:
    """Runs up to ``max_running_jobs`` jobs at once; claims the runs of dead workers first."""

    def __init__(self, board: JobBoard, processor: JobProcessor, settings: Settings, metrics: ServiceMetrics):
        self.board, self.processor, self.settings, self.metrics = board, processor, settings, metrics
        self.worker_id = settings.worker_id
        self.running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.max_running_jobs)

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            await self._slots.acquire()
            try:
                entry = await self._next_entry()
                backoff.reset()
            except TRANSIENT as exc:
                self._slots.release()
                await backoff.wait("job queue", exc)
                continue
            except BaseException:
                self._slots.release()
                raise
            if entry is None:
                self._slots.release()
                continue
            entry_id, job_id = entry
            task = asyncio.create_task(self._run(entry_id, job_id), name=f"job-{job_id}")
            self.running[entry_id] = task
            task.add_done_callback(functools.partial(self._done, entry_id))

    async def stop(self) -> None:
        """Give running jobs back to the queue (not counted as attempts) and stop."""
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, entry_id: str, _: asyncio.Task[None]) -> None:
        self.running.pop(entry_id, None)
        self._slots.release()

    async def _next_entry(self) -> tuple[str, str] | None:
        """A run whose worker went silent, else a new one (blocking up to a second)."""
        redis = self.board.redis
        idle_ms = int(self.settings.job_claim_idle_s * 1000)
        claimed: list[Any]
        _, claimed, _ = await redis.xautoclaim(
            keys.JOBS_STREAM, keys.JOBS_GROUP, self.worker_id, idle_ms, start_id="0-0", count=1
        )
        if claimed:
            entry_id, fields = claimed[0]
            log.info("claimed job run %s of a silent worker", entry_id.decode())
            return entry_id.decode(), fields[b"job"].decode()
        answer: Any = await redis.xreadgroup(
            keys.JOBS_GROUP, self.worker_id, {keys.JOBS_STREAM: ">"}, count=1, block=BLOCK_MS
        )
        for _, entries in answer or []:
            for entry_id, fields in entries:
                return entry_id.decode(), fields[b"job"].decode()
        return None

    async def _run(self, entry_id: str, job_id: str) -> None:
        run = Run(job_id, entry_id, uuid.uuid4().hex[:12])
        started = await self.board.start(run, self.worker_id, self.settings.job_max_attempts)
        if started != "ok":
            log.info("job %s: %s; acknowledging its run", job_id, started)
            await self.board.ack(entry_id)
            return
        record = await self.board.get(job_id)
        assert record is not None
        renewer = asyncio.create_task(self._renew(run))
        self.metrics.active_jobs.inc()
        result_file = self.board.data_dir / run.result_name()
        video_file = self.board.data_dir / run.video_name() if record.options.get("render") else None
        try:
            result = await self.processor.run(record, self._report(run), video_file)
            await asyncio.to_thread(write_json_atomic, result_file, result.model_dump(mode="json"))
            won = await _persist(
                lambda: self.board.finish(
                    run, result=run.result_name(), video=run.video_name() if video_file else ""
                )
            )
            if not won:
                log.info("job %s was cancelled or taken over meanwhile; discarding this run", job_id)
                _remove(result_file, video_file)
        except asyncio.CancelledError:
            _remove(result_file, video_file)
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # the worker is stopping
                with contextlib.suppress(*TRANSIENT):
                    await asyncio.shield(self.board.requeue(run, counts=False))
                raise
            await _persist(lambda: self.board.finish(run, error="cancelled"))  # acks a cancelled job's run
        except MediaError as exc:  # the input's fault: running again cannot help
            _remove(result_file, video_file)
            self.metrics.errors.labels(f"job_{exc.kind}").inc()
            reason = str(exc)
            await _persist(lambda: self.board.finish(run, error=reason))
        except Exception as exc:
            _remove(result_file, video_file)
            log.warning("job %s failed on %s: %s", job_id, self.worker_id, exc)
            self.metrics.errors.labels(f"job_{type(exc).__name__}").inc()
            reason = public_failure(exc, f"job {job_id}")
            await _persist(lambda: self.board.requeue(run, reason))
        finally:
            renewer.cancel()
            self.metrics.active_jobs.dec()

    def _report(self, run: Run) -> ProgressReport:
        async def report(done: int, total: int) -> bool:
            try:
                return await self.board.progress(run, done, total)
            except TRANSIENT:  # progress is best effort while Redis restarts; the work goes on
                return True

        return report

    async def _renew(self, run: Run) -> None:
        """Renew the run well within the claim timeout, so live workers keep their jobs."""
        every = self.settings.job_claim_idle_s / 3
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(*TRANSIENT):
                if not await self.board.renew(run, self.worker_id):
                    return


async def _persist(write: Callable[[], Awaitable[bool]]) -> bool:
    """A run's final transition waits for Redis to come back rather than lose finished work."""
    backoff = Backoff()
    while True:
        try:
            return await write()
        except TRANSIENT as exc:
            await backoff.wait("finishing a job", exc)


def _remove(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)
