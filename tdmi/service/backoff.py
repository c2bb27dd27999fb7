"""Waiting out a transient fault (Redis away, a full disk) before trying again.

The schedule is the one the SDK uses too (``tdmi.protocol.backoff``); this adds the wait and one
log line per outage. It sits below both the job runner and the Redis adapters, which use it.
"""

from __future__ import annotations

import asyncio
import logging

from tdmi.protocol.backoff import BackoffSchedule
from tdmi.service.faults import classify

__all__ = ["Backoff"]

log = logging.getLogger("tdmi.cluster")


class Backoff(BackoffSchedule):
    """The shared backoff schedule, waited out by a loop that met a transient fault (Redis lost)."""

    def __init__(self, first_s: float = 0.1, cap_s: float = 5.0):
        super().__init__(first_s, cap_s)

    async def wait(self, what: str, exc: BaseException) -> None:
        """Logged at the first failure after a success only: an outage is one line, not one a tick."""
        delay_s = self.next_delay()
        if self.failures == 1:
            log.warning("%s: %s (%s); retrying quietly until it works", what, classify(exc).detail, exc)
        await asyncio.sleep(delay_s)
