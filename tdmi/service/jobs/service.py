"""The job system as the HTTP layer sees it, the same over SQLite (embedded) and Redis (API node).

It submits jobs, shows each one only to the key that created it (and admin keys), deletes jobs
with their files, and removes finished jobs older than ``job_retention_hours`` in the background.
In embedded mode it also starts and stops the process's ``JobRunner``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.jobs.disk import watch_data_dir
from tdmi.service.jobs.leftovers import sweep_leftovers
from tdmi.service.jobs.queue import JobQueue, NewJob
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.jobs.store import JobRecord, remove_files, upload_path
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics

__all__ = ["JobService"]

log = logging.getLogger("tdmi.jobs")


class JobService:
    POLL_S = 0.1

    def __init__(
        self, queue: JobQueue, settings: Settings, metrics: ServiceMetrics, runner: JobRunner | None = None
    ):
        self.queue, self.settings, self.runner = queue, settings, runner
        self.accepting = True
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = False
        watch_data_dir(metrics, queue.data_dir)

    async def start(self, loops: Loops) -> None:
        """The runner (embedded) and the retention sweep run as ``loops`` of the node."""
        if self.runner is not None:
            self.runner.start(loops)
        self._sweeper = loops.start("retention sweep", self._sweep_once, self.settings.job_sweep_interval_s)

    async def stop(self) -> None:
        """Stop accepting; running jobs go back to the queue (see ``JobRunner.stop``)."""
        self.accepting = False
        if self._stopped:
            return
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.runner is not None:
            await self.runner.stop()
        self.queue.close()

    def upload_path(self, job_id: str, suffix: str = "") -> Path:
        """Where an upload is saved before its job exists (shared storage in a cluster)."""
        return upload_path(self.queue.data_dir, job_id, suffix)

    async def queued(self) -> int:
        return await self.queue.queued()

    async def submit(self, job: NewJob) -> JobRecord:
        return await self.queue.create(job)

    async def get(self, job_id: str, caller: Caller) -> JobRecord | None:
        """The job if ``caller`` may see it; a job being deleted is already gone."""
        record = await self.queue.get(job_id)
        if record is None or record.deleted or not caller.sees(record.owner):
            return None
        return record

    async def wait(self, job_id: str) -> JobRecord | None:
        """Until the job is done, failed or cancelled; None if it was deleted meanwhile."""
        while True:
            record = await self.queue.get(job_id)
            if record is None or record.finished:
                return record
            await asyncio.sleep(self.POLL_S)

    async def delete(self, job_id: str) -> JobRecord | None:
        """Delete the job and its files; a queued or running one is cancelled first (a running one's
        files go once its run has stopped). Answers the job's last state, None if it was gone."""
        deletion = await self.queue.delete(job_id)
        if deletion is None:
            return None
        record = deletion.record
        if deletion.outcome == "deleted":
            remove_files(*record.files())
        if not record.finished:
            record = dataclasses.replace(record, status="cancelled")
        return record

    async def sweep(self, now: float | None = None) -> int:
        """Delete finished jobs last updated more than ``job_retention_hours`` ago (how many went), and
        files no job reads (``jobs.leftovers``); a retention of 0 keeps every job."""
        cutoff = (time.time() if now is None else now) - self.settings.job_retention_hours * 3600
        deleted = 0
        kept_forever = self.settings.job_retention_hours == 0
        for job_id in [] if kept_forever else await self.queue.finished_ids(cutoff):
            gone = await self.queue.delete(job_id, finished_before=cutoff)
            if gone is not None:
                remove_files(*gone.record.files())
                deleted += 1
        await sweep_leftovers(self.queue, self.queue.data_dir, self.settings.leftover_grace_s, now)
        return deleted

    async def _sweep_once(self) -> None:
        if deleted := await self.sweep():
            log.info("retention: deleted %d finished jobs", deleted)
