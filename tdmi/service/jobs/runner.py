"""The one loop that runs video jobs, in the embedded server and in every cluster worker alike.

It takes runs from a ``JobQueue`` (SQLite or Redis), at most ``max_running_jobs`` at once, and
ends each one under the same policy in both modes, by the class of its error (``tdmi.service.faults``):

- bad input (``MediaError``) fails the job at once: running it again cannot help;
- a transient fault of the server (descriptors, memory or disk space exhausted, Redis away, also
  when PyAV calls it an unreadable file) gives the job back after a wait of 1 s doubling to 60 s,
  without using an attempt; the job's error says "retry N of M ..." meanwhile. After
  ``job_max_retries`` such retries it fails with "gave up after N retries ...";
- any other error (a bug) puts it back in the queue, until ``job_max_attempts`` runs were used
  up; the next start then fails it with "gave up after N attempts; last: <error>";
- a run that killed its process is counted at the next start; when every run so far crashed,
  the job fails with "the job crashed the worker N times" instead of crash-looping;
- a stop (SIGTERM) gives running jobs back without using an attempt;
- a cancel or a lost claim stops the run, whose files are discarded.

Errors are counted in ``tdmi_errors_total{kind="job_<kind>"}``, ``<kind>`` being the fault's
kind (the ``MediaError`` kind, ``out_of_descriptors``, ``insufficient_storage``, ...), ``gave_up``,
``crashed`` or a bug's exception class name.

The loop that takes runs is one of the node's loops (``tdmi.service.loops``): it survives any error.

When a run has ended, the job's upload is removed (unless ``keep_uploads``), and a job that was
deleted while it ran goes with all its files.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tdmi.service.backoff import Backoff
from tdmi.service.config import Settings
from tdmi.service.errors import public_failure
from tdmi.service.faults import Fault, FaultClass, classify, ignore_transient, is_transient
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.inference.threads import named_threads
from tdmi.service.jobs.disk import watch_data_dir
from tdmi.service.jobs.processor import JobProcessor, ProgressReport
from tdmi.service.jobs.queue import Claim, JobQueue, StartInfo
from tdmi.service.jobs.store import JobRecord, remove_files, write_json_atomic
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.tasks import cancel_and_wait

__all__ = ["JobRunner", "exhausted_error", "job_ended", "retry_delay_s"]

log = logging.getLogger("tdmi.jobs")

T = TypeVar("T")
FIRST_RETRY_S, LAST_RETRY_S = 1.0, 60.0


def retry_delay_s(retries: int) -> float:
    """How long a run waits before giving its job back after its ``retries + 1``-th transient fault."""
    return min(FIRST_RETRY_S * 2.0**retries, LAST_RETRY_S)


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

    def start(self, loops: Loops) -> None:
        self._loop = loops.start("job consumer", self.take_next)

    async def stop(self) -> None:
        """Stop taking runs; running jobs go back to the queue (not counted as attempts)."""
        await cancel_and_wait(*(t for t in (self._loop, *self.running.values()) if t is not None))
        self.processor.close()
        self._io.shutdown(wait=False, cancel_futures=True)

    async def take_next(self) -> None:
        """One step of the job consumer: wait for a free slot, take a run (up to about a second)
        and start it; a failed take (Redis away) is the loop's to wait out."""
        await self._slots.acquire()
        try:
            claim = await self.queue.take()
        except BaseException:
            self._slots.release()
            raise
        if claim is None:
            self._slots.release()
            return
        task = asyncio.create_task(self._run(claim), name=f"job-{claim.job_id}")
        self.running[claim.entry_id or claim.token] = task
        task.add_done_callback(functools.partial(self._done, claim))

    def _done(self, claim: Claim, task: asyncio.Task[None]) -> None:
        self.running.pop(claim.entry_id or claim.token, None)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:  # the run's own storage
            public_failure(exc, f"job {claim.job_id}'s run")  # logged; the job is left to recovery

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
            await self._attempt(claim, record, info)  # a stop raises CancelledError: the job stays queued
        await self._persist(lambda: job_ended(self.queue, claim.job_id, self.settings.keep_uploads))

    async def _attempt(self, claim: Claim, record: JobRecord, info: StartInfo) -> None:
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
                with ignore_transient():
                    await asyncio.shield(self.queue.requeue(claim, charge="none"))
                raise
            await self._persist(lambda: self.queue.release(claim))  # cancelled, deleted or taken over
        except Exception as exc:
            remove_files(result_file, video_file)
            await self._failed(claim, exc, info)  # the renewer keeps the claim while a retry waits
        finally:
            renewer.cancel()
            self.metrics.active_jobs.dec()

    async def _failed(self, claim: Claim, exc: Exception, info: StartInfo) -> None:
        fault = classify(exc)
        self.metrics.errors.labels(f"job_{fault.kind}").inc()
        if fault.cls is FaultClass.TRANSIENT:
            await self._retry_later(claim, fault, exc, info)
            return
        reason = public_failure(exc, f"job {claim.job_id}")  # the input's sentence, or a reference
        log.warning("job %s failed on %s: %s", claim.job_id, self.worker_id, reason)
        if fault.cls is FaultClass.INPUT:  # running again cannot help
            await self._persist(lambda: self.queue.fail(claim, reason))
        else:
            await self._persist(lambda: self.queue.requeue(claim, reason))

    async def _retry_later(self, claim: Claim, fault: Fault, exc: Exception, info: StartInfo) -> None:
        """Give the job back after a wait, its attempt refunded, a retry counted; or fail it once
        ``job_max_retries`` retries were used."""
        limit = self.settings.job_max_retries
        if info.retries >= limit:
            reason = f"gave up after {info.retries} retries of transient server faults; last: {fault.detail}"
            log.warning("job %s failed on %s: %s (%s)", claim.job_id, self.worker_id, reason, exc)
            self.metrics.errors.labels("job_gave_up").inc()
            await self._persist(lambda: self.queue.fail(claim, reason))
            return
        delay_s = retry_delay_s(info.retries)
        reason = f"retry {info.retries + 1} of {limit} after a transient server fault: {fault.detail}"
        log.warning("job %s on %s: %s, in %.0f s (%s)", claim.job_id, self.worker_id, reason, delay_s, exc)

        async def give_back() -> bool:
            return await self.queue.requeue(claim, reason, charge="retry")

        try:
            await asyncio.sleep(delay_s)  # the server's state needs time to pass
        except asyncio.CancelledError:  # the runner is stopping: give the job back now
            with ignore_transient():
                await asyncio.shield(give_back())
            raise
        if not await self._persist(give_back):
            await self._persist(lambda: self.queue.release(claim))  # cancelled or taken over meanwhile

    def _report(self, claim: Claim) -> ProgressReport:
        async def report(done: int, total: int) -> bool:
            with ignore_transient():  # best effort while Redis restarts; the work goes on
                return await self.queue.progress(claim, done, total)
            return True

        return report

    async def _renew(self, claim: Claim) -> None:
        """Renew the run well within the claim timeout, so live workers keep their jobs."""
        every = self.settings.job_claim_idle_s / 3
        while True:
            await asyncio.sleep(every)
            with ignore_transient():
                if not await self.queue.renew(claim):
                    return

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T:
        """A run's transitions wait for the storage to come back rather than lose finished work."""
        backoff = Backoff()
        while True:
            try:
                return await write()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await backoff.wait("job queue", exc)
