"""Give the C heap's free pages back to the OS when the models go idle.

glibc keeps freed memory (decoded frames, crops, batches, heatmaps) in its heaps for reuse and
returns little of it by itself. Under load that is a band of about 100 MiB above the live heap
with the demo model on a CPU, and without this it stays held after the load has ended, which
reads as a leak on any memory graph. ``malloc_trim(0)`` returns the free pages. It runs once per
idle spell (no batch for a whole interval), on the device thread, so never beside a batch.

Under load it would not help: the same memory is needed again within seconds (measured: a trim
every 5 s left RSS within 40 MiB of no trim at all). Other C libraries (musl, macOS) have no
such call, and there this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from concurrent.futures import Executor

__all__ = ["IdleHeapTrim", "malloc_trim"]

log = logging.getLogger("tdmi.inference")


def _find_malloc_trim() -> Callable[[], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, TypeError, AttributeError):  # no C library found, or not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(trim(0))


malloc_trim: Callable[[], int] | None = _find_malloc_trim()
"""glibc's ``malloc_trim(0)`` (1 when memory was returned), or None where there is none."""


class IdleHeapTrim:
    """Every ``interval_s``: when ``activity()`` (a count of batches run) has not moved since the
    last look and has moved since the last trim, run ``trim`` on ``executor``."""

    def __init__(
        self,
        activity: Callable[[], int],
        interval_s: float,
        executor: Executor,
        trim: Callable[[], int] | None = malloc_trim,
    ):
        self.activity = activity
        self.interval_s = interval_s
        self.executor = executor
        self.trim = trim
        self.trims = 0

    async def run(self) -> None:
        if self.trim is None:
            return
        loop = asyncio.get_running_loop()
        seen, trimmed_at = self.activity(), None
        while True:
            await asyncio.sleep(self.interval_s)
            now = self.activity()
            if now == seen and now != trimmed_at:
                await loop.run_in_executor(self.executor, self.trim)
                trimmed_at = now
                self.trims += 1
                log.debug("idle after %d batches: heap trimmed", now)
            seen = now
