"""Give the C heap's free pages back to the OS, under load and once the load has ended.

glibc keeps freed memory (decoded frames, crops, batches, heatmaps) in its heaps for reuse and
returns little of it by itself: in a soak of live streams and video jobs on the demo model that
was a band of 100-130 MiB above the live heap, still held after the load had ended, which reads
as a leak on any memory graph. ``malloc_trim(0)`` returns the free pages (about 10 ms for that
much). It runs every interval in which a batch ran, on the device thread between batches, so the
band never builds up for long; an idle node is trimmed once and then left alone. Other C
libraries (musl, macOS) have no such call, and there this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from tdmi.service.inference.libc import libc_function

__all__ = ["HeapTrim", "malloc_trim"]

log = logging.getLogger("tdmi.inference")


def _find_malloc_trim() -> Callable[[], int] | None:
    trim = libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(trim(0))


malloc_trim: Callable[[], int] | None = _find_malloc_trim()
"""glibc's ``malloc_trim(0)`` (1 when memory was returned), or None where there is none."""


class HeapTrim:
    """Every ``interval_s``: when ``activity()`` (a count of batches run) has moved since the
    last trim (or none ran yet), run ``trim`` on ``executor``."""

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

    async def run(self) -> None:
        if self.trim is None:
            return
        loop = asyncio.get_running_loop()
        trimmed_at: int | None = None
        while True:
            await asyncio.sleep(self.interval_s)
            now = self.activity()
            if now != trimmed_at:
                await loop.run_in_executor(self.executor, self.trim)
                trimmed_at = now
                log.debug("heap trimmed after %d batches", now)
