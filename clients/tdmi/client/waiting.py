"""Waiting for a job: one poll step shared by the sync and async clients, with a progress bar."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from tdmi.client.calls import check_outcome
from tdmi.client.job_rate import JobRate
from tdmi.protocol import FINISHED, JobPublic

__all__ = ["JobWaiter"]

# tqdm's own rate and time left are left out: they would time the polls, beside the job's speed
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames{postfix}"


class JobWaiter:
    """Feed it each polled status; it draws the bar and says when the job is over.

    ``step`` returns the finished job (raising ``JobFailed`` for failed or cancelled ones) or
    None when the caller should sleep ``poll_s`` and poll again; past ``timeout_s`` it raises
    ``TimeoutError``. The bar appears once the server knows the number of frames.
    """

    def __init__(self, progress: bool = False, poll_s: float = 0.5, timeout_s: float | None = None):
        self.poll_s = poll_s
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._progress = progress
        self._rate = JobRate()
        self._bar: tqdm | None = None

    def step(self, job: JobPublic) -> JobPublic | None:
        if self._progress:
            self._draw(job)
        if job.status in FINISHED:
            self.close()
            return check_outcome(job)
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.close()
            raise TimeoutError(f"job {job.job_id} still {job.status} after the timeout")
        return None

    def _draw(self, job: JobPublic) -> None:
        self._rate.update(job)
        total, done = job.progress.frames_total, job.progress.frames_done
        description, speed = f"{job.job_id} {job.status}", self._speed(job)
        if self._bar is None:
            if total is None:
                return
            self._bar = tqdm(
                total=total,
                initial=done,
                desc=description,
                postfix=speed,
                bar_format=BAR_FORMAT,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )
            return
        self._bar.total = total
        self._bar.set_description_str(description, refresh=False)
        self._bar.set_postfix_str(speed, refresh=False)
        self._bar.update(done - self._bar.n)
        self._bar.refresh()

    def _speed(self, job: JobPublic) -> str:
        fps, left = self._rate.frames_per_second, self._rate.seconds_left(job)
        if fps is None or job.status != "running":
            return ""
        return f"{fps:.1f} frames/s" + ("" if left is None else f", {tqdm.format_interval(left)} left")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
