"""Embedded mode's job system: a FIFO in the process, SQLite for state, ``JobProcessor`` for the work.

Jobs wait in a FIFO and at most ``max_running_jobs`` run at once. A job that was running when
the server stopped is put back in the queue on start-up (``requeue_interrupted``) and runs again
from the beginning; its upload is kept until the job finishes.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tdmi.service.config import Settings
from tdmi.service.errors import public_failure
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.jobs.processor import JobProcessor, ProgressReport
from tdmi.service.jobs.store import JobRecord, JobStore, write_json_atomic
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory

__all__ = ["JobRunner"]

log = logging.getLogger("tdmi.jobs")


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        runtime: InferenceRuntime,
        sessions: SessionFactory,
        settings: Settings,
        metrics: ServiceMetrics,
    ):
        self.store = store
        self.runtime = runtime
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self.running: dict[str, asyncio.Task[None]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._io = ThreadPoolExecutor(max_workers=2 * settings.max_running_jobs, thread_name_prefix="tdmi-io")
        self.processor = JobProcessor(runtime, sessions, settings, metrics, self._io)
        self.accepting = True

    async def start(self) -> None:
        for record in self.store.requeue_interrupted():
            log.info("job %s was interrupted by a stop; running it again", record.id)
        for record in self.store.list(status="queued"):
            self._queue.put_nowait(record.id)
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"job-runner-{i}")
            for i in range(self.settings.max_running_jobs)
        ]

    async def stop(self) -> None:
        """Stop taking jobs; running ones go back to ``queued`` and run again after a restart."""
        self.accepting = False
        for task in self._tasks:
            task.cancel()
        running = list(self.running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        self.store.requeue_interrupted()
        self._io.shutdown(wait=False, cancel_futures=True)

    def upload_path(self, job_id: str, suffix: str = "") -> Path:
        return self.store.upload_path(job_id, suffix)

    async def queued(self) -> int:
        return self._queue.qsize()

    async def submit(
        self, job_id: str, model: str, options: dict[str, Any], input_path: Path, frames_total: int
    ) -> JobRecord:
        record = self.store.create(
            model, options, input_path=input_path, frames_total=frames_total, job_id=job_id
        )
        self._finished.setdefault(record.id, asyncio.Event())
        self._queue.put_nowait(record.id)
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    async def wait(self, job_id: str) -> JobRecord:
        """Wait until the job is done, failed or cancelled."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        record = self.store.get(job_id)
        while record is not None and record.status in ("queued", "running"):
            await event.wait()
            record = self.store.get(job_id)
        assert record is not None
        return record

    async def cancel(self, job_id: str) -> bool:
        changed = self.store.mark_cancelled(job_id)
        task = self.running.get(job_id)
        if changed and task is not None:
            task.cancel()
        if changed:
            self._finished.setdefault(job_id, asyncio.Event()).set()
        return changed

    async def _serve(self) -> None:
        while True:
            job_id = await self._queue.get()
            record = self.store.get(job_id)
            if record is None or record.status != "queued":
                continue
            task = asyncio.create_task(self._run(record), name=f"job-{job_id}")
            self.running[job_id] = task
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # the runner itself is stopping
                    raise
                # else the job alone was cancelled (DELETE): serve the next one
            finally:
                self.running.pop(job_id, None)
                record = self.store.get(job_id)
                if record is None or record.status not in ("queued", "running"):
                    self._finished.setdefault(job_id, asyncio.Event()).set()

    async def _run(self, record: JobRecord) -> None:
        self.store.mark_running(record.id)
        self.metrics.active_jobs.inc()
        try:
            rendered = self.store.video_path(record.id) if record.options.get("render") else None
            result = await self.processor.run(record, self._report(record.id), rendered)
            write_json_atomic(self.store.result_path(record.id), result.model_dump(mode="json"))
            self.store.mark_done(record.id, video_path=rendered)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = getattr(exc, "kind", type(exc).__name__)
            log.warning("job %s failed: %s", record.id, exc)
            self.metrics.errors.labels(f"job_{kind}").inc()
            self.store.mark_failed(record.id, public_failure(exc, f"job {record.id}"))
        finally:
            self.metrics.active_jobs.dec()

    def _report(self, job_id: str) -> ProgressReport:
        async def report(done: int, total: int) -> bool:
            return self.store.update_progress(job_id, done, total)

        return report
