"""A job's speed and time left for the progress bar: the server's measure, kept current.

The server's ``frames_per_second`` is the average since its node first saw the job running. A
job slows when others start beside it, and that average keeps the earlier pace: the time left
comes out short. Here the rate is measured again between the progress updates the polls bring,
over the server's own timestamps (``updated_at``: not the timing of the polls, not this
machine's clock), and smoothed exponentially, starting from the server's figure.
"""

from __future__ import annotations

import math

from tdmi.protocol import JobPublic

__all__ = ["JobRate"]

TIME_CONSTANT_S = 15.0


class JobRate:
    """Feed it every polled status of one job; it keeps the smoothed frames per second."""

    def __init__(self, time_constant_s: float = TIME_CONSTANT_S):
        self.time_constant_s = time_constant_s
        self.frames_per_second: float | None = None
        self._last: tuple[int, float] | None = None  # frames done and when, at the latest progress

    def update(self, job: JobPublic) -> None:
        done, at = job.progress.frames_done, job.updated_at.timestamp()
        if job.status != "running":  # queued (again): its wait is no part of the speed
            self._last = None
            return
        if self._last is None or done < self._last[0]:  # running from here, or from the start again
            self._last = (done, at)
            self.frames_per_second = job.progress.frames_per_second
            return
        frames, seconds = done - self._last[0], at - self._last[1]
        if frames <= 0 or seconds <= 0:  # a poll between two progress updates
            return
        measured = frames / seconds
        if self.frames_per_second is None:
            self.frames_per_second = measured
        else:
            weight = 1.0 - math.exp(-seconds / self.time_constant_s)
            self.frames_per_second += weight * (measured - self.frames_per_second)
        self._last = (done, at)

    def seconds_left(self, job: JobPublic) -> float | None:
        total, rate = job.progress.frames_total, self.frames_per_second
        if total is None or not rate:
            return None
        return max(0, total - job.progress.frames_done) / rate
