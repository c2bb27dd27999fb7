"""The job system as the HTTP layer sees it, the same over SQLite (embedded) and Redis (API node).

It admits new jobs (taking jobs, room in the queue and on the disk), turns a saved upload into a
queued job (model, probe, options), shows each job only to the key that created it (and admin
keys) with its rate of progress, deletes jobs with their files, and removes finished jobs older
than ``job_retention_hours`` in the background. In embedded mode it also starts and stops the
process's ``JobRunner``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tdmi.protocol import JobProgress
from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.jobs.disk import check_free_space, watch_data_dir
from tdmi.service.jobs.leftovers import sweep_leftovers
from tdmi.service.jobs.options import JobRequest, lookahead_within, video_boxes
from tdmi.service.jobs.progress_rate import ProgressRates
from tdmi.service.jobs.queue import JobQueue, NewJob
from tdmi.service.jobs.runner import JobRunner
from tdmi.service.jobs.store import JobRecord, new_job_id, remove_files, upload_path
from tdmi.service.loops import Loops
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.video import VideoInfo, limits_of, probe_video

__all__ = ["JobService", "UploadSlot"]

log = logging.getLogger("tdmi.jobs")


@dataclass(frozen=True)
class UploadSlot:
    """Room for a new job's upload: the job's id, and where its video is saved before the job exists
    (shared storage in a cluster)."""

    job_id: str
    path: Path


class JobService:
    POLL_S = 0.1

    def __init__(
        self,
        queue: JobQueue,
        settings: Settings,
        metrics: ServiceMetrics,
        catalog: ModelCatalog,
        runner: JobRunner | None = None,
    ):
        self.queue, self.settings, self.catalog, self.runner = queue, settings, catalog, runner
        self.rates = ProgressRates()  # what this node saw of running jobs
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

    @asynccontextmanager
    async def admit(self, declared_bytes: int) -> AsyncIterator[UploadSlot]:
        """Room for a new job's upload while the service takes jobs (else 503), its queue has room
        (429) and the disk has room for the upload's declared size (507). The upload is removed if
        the block fails: no job reads it then (Redis refusing the job among the reasons)."""
        settings = self.settings
        if not self.accepting:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        if await self.queue.queued() >= settings.max_queued_jobs:
            raise ApiError(
                429, "too_many_jobs", f"{settings.max_queued_jobs} jobs are already waiting; retry later"
            )
        job_id = new_job_id()
        slot = UploadSlot(job_id, upload_path(self.queue.data_dir, job_id))
        incoming = min(declared_bytes, settings.max_upload_bytes)
        await asyncio.to_thread(check_free_space, slot.path.parent, settings.min_free_bytes, incoming)
        try:
            yield slot
        except BaseException:
            slot.path.unlink(missing_ok=True)
            raise

    async def create(self, slot: UploadSlot, job: JobRequest, *, wait: bool = False) -> JobRecord:
        """Queue the job of a saved upload: its model and lookahead chosen, the video probed, the
        boxes held to it. ``wait`` (the client awaits the result) holds it to ``wait_max_frames``."""
        model = self.catalog.get(job.model)
        lookahead = lookahead_within(job.lookahead, model.preset.num_frames // 2)
        info = await self._probe(slot.path, job.filename)
        if wait and info.num_frames > self.settings.wait_max_frames:
            raise ApiError(
                422,
                "too_long_to_wait",
                f"?wait=true is for videos up to {self.settings.wait_max_frames} frames; "
                f"this one has {info.num_frames}: poll the job instead",
            )
        options = {
            "boxes": video_boxes(job.boxes, info.width, info.height, info.num_frames),
            "lookahead": lookahead,
            "render": job.render,
            "filename": job.filename,
        }
        new = NewJob(slot.job_id, model.name, options, slot.path, info.num_frames, job.owner)
        return await self.queue.create(new)

    async def _probe(self, path: Path, filename: str | None) -> VideoInfo:
        """The upload's video stream, its limits checked (a 4xx for a file that is no video)."""
        limits = limits_of(self.settings)
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: probe_video(path, **limits, name=filename)
        )

    def progress(self, record: JobRecord) -> JobProgress:
        """The job's progress, with its rate and time left while it runs
        (``tdmi.service.jobs.progress_rate``)."""
        running = record.status == "running"
        return self.rates.progress(
            record.id, running, record.frames_done, record.frames_total, record.updated_at
        )

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
