"""A node's long-lived loops (job consumer, heartbeats, sweeps, Redis watch): none of them dies.

Each loop repeats one *step*. A step that raises is classified (``tdmi.service.faults``), logged once
per streak of failures of one kind (not once per tick), and tried again after a backoff. A loop
that has failed without a break for ``stall_s``, or whose task ended, makes its node not ready
with the reason on ``/readyz``; its first success makes the node ready again.

A stop must end every loop even when its task lost the cancellation (on Python 3.11 inside a
Redis command, see ``tdmi.service.streaming.tasks``: about one test run in 40 hung with the job
consumer's task cancelled yet still reading). So a stop cancels until the tasks are done
(``cancel_and_wait``), and a loop also ends at its next step or failure once stopping.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tdmi.protocol.backoff import BackoffSchedule
from tdmi.service.errors import internal_reference
from tdmi.service.faults import Fault, classify
from tdmi.service.streaming.tasks import cancel_and_wait

__all__ = ["Loops", "Step", "Trouble"]

log = logging.getLogger("tdmi.loops")

Step = Callable[[], Awaitable[object]]
# (loop name, why it cannot run, or None once it runs again): ``Readiness.loop_trouble``
Trouble = Callable[[str, str | None], None]
FIRST_RETRY_S, LAST_RETRY_S = 0.1, 5.0


@dataclass
class _Streak:
    """Failures of one loop since its last success."""

    since: float
    failures: int = 0
    kind: str = ""  # the fault kind last logged
    reason: str = ""  # what /readyz says once the streak is too long
    stalled: bool = False


class Loops:
    """Starts and stops a node's loops; tells ``trouble`` which of them cannot run."""

    def __init__(self, trouble: Trouble, stall_s: float):
        self.trouble, self.stall_s = trouble, stall_s
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self, name: str, step: Step, every_s: float = 0.0) -> asyncio.Task[None]:
        """Run ``step`` again and again, ``every_s`` apart (a step that blocks by itself: 0)."""
        task = asyncio.create_task(self._run(name, step, every_s), name=name)
        task.add_done_callback(functools.partial(self._ended, name))
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(*self._tasks)

    async def _run(self, name: str, step: Step, every_s: float) -> None:
        backoff = BackoffSchedule(FIRST_RETRY_S, LAST_RETRY_S)
        streak: _Streak | None = None
        while not self._stopping:
            try:
                await step()
            except Exception as exc:
                if self._stopping:
                    return
                streak = streak or _Streak(since=time.monotonic())
                self._failed(name, exc, streak)
                await asyncio.sleep(min(backoff.next_delay(), every_s or math.inf))
                continue
            if streak is not None:
                self._recovered(name, streak)
                streak = None
                backoff.reset()
            if every_s:
                await asyncio.sleep(every_s)

    def _failed(self, name: str, exc: Exception, streak: _Streak) -> None:
        fault = classify(exc)
        streak.failures += 1
        if fault.kind != streak.kind:  # the first failure of a streak, or a new kind of failure
            streak.kind, streak.reason = fault.kind, _log_failure(name, exc, fault)
        if time.monotonic() - streak.since >= self.stall_s:
            self.trouble(name, f"{name} failing for over {self.stall_s:g} s: {streak.reason}")
            if not streak.stalled:
                streak.stalled = True
                log.error("%s failing for over %g s: not ready until it runs again", name, self.stall_s)

    def _recovered(self, name: str, streak: _Streak) -> None:
        log.info(
            "%s runs again after %d failures in %.1f s",
            name,
            streak.failures,
            time.monotonic() - streak.since,
        )
        self.trouble(name, None)

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        """A loop's task never ends but by a stop; if it does, the node cannot do that work."""
        if self._stopping or task.cancelled():
            return
        log.error("%s stopped", name, exc_info=task.exception())
        self.trouble(name, f"{name} stopped")


def _log_failure(name: str, exc: Exception, fault: Fault) -> str:
    """Log a new streak's failure once; answers the reason /readyz may show (no address, no path)."""
    if fault.transient:
        log.warning("%s failing: %s (%s); retrying, quietly until it runs again", name, fault.detail, exc)
        return fault.detail
    reference = internal_reference()
    log.error("%s failing (reference %s); retrying quietly until it runs", name, reference, exc_info=exc)
    return f"internal error (reference {reference})"
