"""Frames per second and time left of running jobs, from the timestamps of their progress updates.

The job store keeps a job's latest progress and when it was written (``updated_at``), not when
the run began, so each API node remembers the first progress it saw of each running job and
measures the rate from there: frames gained over the store's own timestamps, not over the
timing of the polls. A node that starts watching a job mid-run reports a rate once the job has
moved on by one progress update. Bounded: the oldest jobs are forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from tdmi.protocol import JobProgress

__all__ = ["ProgressRates"]


class ProgressRates:
    def __init__(self, max_jobs: int = 4096):
        self.max_jobs = max_jobs
        self._first: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def progress(
        self, job_id: str, running: bool, frames_done: int, frames_total: int | None, updated_at: datetime
    ) -> JobProgress:
        """The job's progress with ``frames_per_second`` and ``eta_seconds`` once they can be told."""
        plain = JobProgress(frames_done=frames_done, frames_total=frames_total)
        now = updated_at.timestamp()
        with self._lock:
            if not running:
                self._first.pop(job_id, None)
                self._last.pop(job_id, None)
                return plain
            first = self._first.get(job_id)
            if first is None or frames_done < self._last[job_id]:  # new, or run again from the start
                first = self._first[job_id] = (frames_done, now)
            self._last[job_id] = frames_done
            self._first.move_to_end(job_id)
            while len(self._first) > self.max_jobs:
                self._last.pop(self._first.popitem(last=False)[0])
        frames, seconds = frames_done - first[0], now - first[1]
        if frames <= 0 or seconds <= 0:
            return plain
        rate = frames / seconds
        left = None if frames_total is None else max(0, frames_total - frames_done) / rate
        return JobProgress(
            frames_done=frames_done, frames_total=frames_total, frames_per_second=rate, eta_seconds=left
        )
