"""The heap trim: after every interval in which batches ran, once on an idle node; glibc's call for real."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tdmi.service.inference.heap import HeapTrim, malloc_trim


def _run_trim(batches_at_each_look: list[int]) -> list[int]:
    """Drive a HeapTrim whose activity reads ``batches_at_each_look`` one look after the other;
    returns the activity at each trim."""
    looks = iter(batches_at_each_look)
    trimmed_at: list[int] = []
    current = {"batches": 0}

    async def drive() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def activity() -> int:
            value = next(looks, None)
            if value is None:  # the end: the driver stops the trim; no trim at this look
                loop.call_soon(done.set)
                return current["batches"] if not trimmed_at else trimmed_at[-1]
            current["batches"] = value
            return value

        def trim() -> int:
            trimmed_at.append(current["batches"])
            return 1

        with ThreadPoolExecutor(max_workers=1) as executor:
            task = asyncio.create_task(HeapTrim(activity, 0.001, executor, trim).run())
            await asyncio.wait_for(done.wait(), timeout=30)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(drive())
    return trimmed_at


def test_trims_after_each_busy_interval_and_once_when_idle() -> None:
    # the first look trims what loading left; then only where batches ran since the last trim
    assert _run_trim([0, 0, 1, 2, 2, 2, 5, 5, 5]) == [0, 1, 2, 5]


def test_an_idle_node_is_trimmed_once() -> None:
    assert _run_trim([7, 7, 7, 7, 7]) == [7]


def test_nothing_runs_without_a_trim_call() -> None:
    async def drive() -> None:
        with ThreadPoolExecutor(max_workers=1) as executor:
            await asyncio.wait_for(HeapTrim(lambda: 0, 0.01, executor, trim=None).run(), timeout=1)

    asyncio.run(drive())  # returns at once instead of looping


def test_glibc_malloc_trim_is_found_and_runs() -> None:
    """The service's platform (Linux, glibc) has the call; elsewhere ``malloc_trim`` is None."""
    assert malloc_trim is not None
    garbage = [bytearray(64 * 1024) for _ in range(256)]  # 16 MiB on the heap, then freed
    del garbage
    assert malloc_trim() in (0, 1)
