"""Waiting for a job: one poll step shared by the sync and async clients, with a progress bar."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from tdmi.client.calls import FINISHED, check_outcome
from tdmi.protocol import JobPublic

__all__ = ["JobWaiter"]


class JobWaiter:
    """Feed it each polled status; it draws the bar and says when the job is over.

    ``step`` returns the finished job (raising ``JobFailed`` for failed or cancelled ones) or
    None when the caller should sleep ``poll_s`` and poll again; past ``timeout_s`` it raises
    ``TimeoutError``.
    """

    def __init__(self, progress: bool = False, poll_s: float = 0.5, timeout_s: float | None = None):
        self.poll_s = poll_s
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._bar: tqdm | None = (
            tqdm(unit="frame", file=sys.stderr, dynamic_ncols=True, leave=True) if progress else None
        )

    def step(self, job: JobPublic) -> JobPublic | None:
        if self._bar is not None:
            self._bar.total = job.progress.frames_total
            self._bar.set_description_str(f"{job.job_id} {job.status}")
            self._bar.update(job.progress.frames_done - self._bar.n)
            self._bar.set_postfix_str(_speed(job), refresh=False)
        if job.status in FINISHED:
            self.close()
            return check_outcome(job)
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.close()
            raise TimeoutError(f"job {job.job_id} still {job.status} after the timeout")
        return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _speed(job: JobPublic) -> str:
    """The server's measure of the job's speed and time left (what tqdm would guess from polls)."""
    fps, eta = job.progress.frames_per_second, job.progress.eta_seconds
    if fps is None:
        return ""
    left = "" if eta is None else f", {int(eta) // 60}:{int(eta) % 60:02d} left"
    return f"{fps:.1f} frames/s{left}"
