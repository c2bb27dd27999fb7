"""The one loop that runs video jobs, in the embedded server and in every cluster worker alike.

It takes runs from a ``JobQueue`` (SQLite or Redis), at most ``max_running_jobs`` at once, and
ends each one under the same policy in both modes:

- bad input (``MediaError``) fails the job at once: running it again cannot help;
- a full disk (ENOSPC) fails it at once with a plain message, its partial files removed;
- any other error puts it back in the queue, until ``job_max_attempts`` runs were used up; the
  next start then fails it with "gave up after N attempts; last: <error>";
- a run that killed its process is counted at the next start; when every run so far crashed,
  the job fails with "the job crashed the worker N times" instead of crash-looping;
- a stop (SIGTERM) gives running jobs back without using an attempt;
- a cancel or a lost claim stops the run, whose files are discarded.

Errors are counted in ``tdmi_errors_total{kind="job_<kind>"}``, ``<kind>`` being the
``MediaError`` kind, ``disk_full``, ``crashed`` or the exception's class name.

When a run has ended, the job's upload is removed (unless ``keep_uploads``), and a job that was
deleted while it ran goes with all its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tdmi.service.cluster.connection import Backoff
from tdmi.service.config import Settings
from tdmi.service.errors import public_failure
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.inference.threads import named_threads
from tdmi.service.jobs.disk import is_disk_full, watch_data_dir
from tdmi.service.jobs.processor import JobProcessor, ProgressReport
from tdmi.service.jobs.queue import Claim, JobQueue, StartInfo
from tdmi.service.jobs.store import JobRecord, remove_files, write_json_atomic
from tdmi.service.media import MediaError
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory

__all__ = ["DISK_FULL", "JobRunner", "exhausted_error", "job_ended"]

log = logging.getLogger("tdmi.jobs")

DISK_FULL = "no space left on the server's data disk while writing the job's files"
T = TypeVar("T")


def exhausted_error(info: StartInfo) -> tuple[str, str]:
    """The error kind and message of a job that used up its attempts (``info``: the start that
    found it so)."""
    runs = info.attempts - 1
    if info.crashes >= runs:
        return "crashed", f"the job crashed the worker {runs} times"
    return "gave_up", f"gave up after {runs} attempts; last: {info.last_error}"


async def job_ended(queue: JobQueue, job_id: str, keep_uploads: bool) -> None:
    """After a run, or a cancel that no run will see: a job deleted meanwhile goes with its files;
    a finished one loses its upload unless uploads are kept."""
    record = await queue.get(job_id)
    if record is None:
        return
    if record.deleted:
        gone = await queue.delete(job_id)
        if gone is not None:
            remove_files(*gone.record.files())
    elif record.finished and not keep_uploads:
        remove_files(record.input_path)


class JobRunner:
    """Runs up to ``max_running_jobs`` jobs of ``queue`` at once on this process's models."""

    def __init__(
        self,
        queue: JobQueue,
        runtime: InferenceRuntime,
        sessions: SessionFactory,
        settings: Settings,
        metrics: ServiceMetrics,
    ):
        self.queue, self.settings, self.metrics = queue, settings, metrics
        self.worker_id = settings.worker_id
        self.running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.max_running_jobs)
        self._io = named_threads("tdmi-io", 2 * settings.max_running_jobs)
        self.processor = JobProcessor(runtime, sessions, settings, metrics, self._io)
        self._loop: asyncio.Task[None] | None = None
        watch_data_dir(metrics, queue.data_dir)

    def start(self) -> None:
        self._loop = asyncio.create_task(self.run(), name="job-runner")

    async def stop(self) -> None:
        """Stop taking runs; running jobs go back to the queue (not counted as attempts)."""
        tasks = [t for t in (self._loop, *self.running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.processor.close()
        self._io.shutdown(wait=False, cancel_futures=True)

    async def run(self) -> None:
        """Take runs forever; a storage outage (Redis restarting) is waited out."""
        backoff = Backoff()
        while True:
            await self._slots.acquire()
            try:
                claim = await self.queue.take()
                backoff.reset()
            except self.queue.transient as exc:
                self._slots.release()
                await backoff.wait("job queue", exc)
                continue
            except BaseException:
                self._slots.release()
                raise
            if claim is None:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(claim), name=f"job-{claim.job_id}")
            self.running[claim.entry_id or claim.token] = task
            task.add_done_callback(functools.partial(self._done, claim.entry_id or claim.token))

    def _done(self, key: str, _: asyncio.Task[None]) -> None:
        self.running.pop(key, None)
        self._slots.release()

    async def _run(self, claim: Claim) -> None:
        info = await self._persist(lambda: self.queue.start(claim, self.worker_id))
        if info is None:
            await self._persist(lambda: self.queue.release(claim))
            await self._persist(lambda: job_ended(self.queue, claim.job_id, self.settings.keep_uploads))
            return
        if info.attempts > self.settings.job_max_attempts:
            kind, reason = exhausted_error(info)
            log.warning("job %s failed: %s", claim.job_id, reason)
            self.metrics.errors.labels(f"job_{kind}").inc()
            await self._persist(lambda: self.queue.fail(claim, reason))
        else:
            record = await self._persist(lambda: self.queue.get(claim.job_id))
            if record is None:
                return
            await self._attempt(claim, record)  # a stop raises CancelledError: the job stays queued
        await self._persist(lambda: job_ended(self.queue, claim.job_id, self.settings.keep_uploads))

    async def _attempt(self, claim: Claim, record: JobRecord) -> None:
        data_dir = self.queue.data_dir
        result_file = data_dir / claim.result_name()
        video_file = data_dir / claim.video_name() if record.options.get("render") else None
        renewer = asyncio.create_task(self._renew(claim))
        self.metrics.active_jobs.inc()
        try:
            result = await self.processor.run(record, self._report(claim), video_file)
            await asyncio.to_thread(write_json_atomic, result_file, result.model_dump(mode="json"))
            if not await self._persist(lambda: self.queue.finish(claim, video=video_file is not None)):
                log.info("job %s was cancelled or taken over meanwhile; discarding this run", claim.job_id)
                remove_files(result_file, video_file)
                await self._persist(lambda: self.queue.release(claim))
        except asyncio.CancelledError:
            remove_files(result_file, video_file)
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # the runner is stopping
                with contextlib.suppress(*self.queue.transient):
                    await asyncio.shield(self.queue.requeue(claim, counts=False))
                raise
            await self._persist(lambda: self.queue.release(claim))  # cancelled, deleted or taken over
        except Exception as exc:
            remove_files(result_file, video_file)
            await self._failed(claim, exc)
        finally:
            renewer.cancel()
            self.metrics.active_jobs.dec()

    async def _failed(self, claim: Claim, exc: Exception) -> None:
        kind: str
        if isinstance(exc, MediaError):  # the input's fault: running again cannot help
            kind, reason, retry = exc.kind, str(exc), False
        elif is_disk_full(exc):
            kind, reason, retry = "disk_full", DISK_FULL, False
        else:
            kind, reason, retry = type(exc).__name__, public_failure(exc, f"job {claim.job_id}"), True
        log.warning("job %s failed on %s: %s", claim.job_id, self.worker_id, reason)
        self.metrics.errors.labels(f"job_{kind}").inc()
        if retry:
            await self._persist(lambda: self.queue.requeue(claim, reason))
        else:
            await self._persist(lambda: self.queue.fail(claim, reason))

    def _report(self, claim: Claim) -> ProgressReport:
        async def report(done: int, total: int) -> bool:
            try:
                return await self.queue.progress(claim, done, total)
            except self.queue.transient:  # best effort while Redis restarts; the work goes on
                return True

        return report

    async def _renew(self, claim: Claim) -> None:
        """Renew the run well within the claim timeout, so live workers keep their jobs."""
        every = self.settings.job_claim_idle_s / 3
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(*self.queue.transient):
                if not await self.queue.renew(claim):
                    return

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """A run's transitions wait for the storage to come back rather than lose finished work."""
        backoff = Backoff()
        while True:
            try:
                return await write()
            except self.queue.transient as exc:
                await backoff.wait("job queue", exc)
