"""The idle heap trim: once per idle spell, never while batches run; glibc's call for real."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tdmi.service.inference.heap import IdleHeapTrim, malloc_trim


def _run_trim(batches_over_time: list[int], extra_looks: int = 2) -> list[int]:
    """Drive an IdleHeapTrim whose activity follows ``batches_over_time`` (one value per look,
    the first read at the start, the last repeated ``extra_looks`` times more, then rising);
    returns the activity at each trim."""
    values = [*batches_over_time, *[batches_over_time[-1]] * extra_looks]
    looks = iter(values)
    current = {"batches": 0}
    trimmed_at: list[int] = []

    async def drive() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def activity() -> int:
            value = next(looks, None)
            if value is None:  # the end: busy again until the driver stops
                loop.call_soon(done.set)
                value = current["batches"] + 1
            current["batches"] = value
            return value

        def trim() -> int:
            trimmed_at.append(current["batches"])
            return 1

        with ThreadPoolExecutor(max_workers=1) as executor:
            task = asyncio.create_task(IdleHeapTrim(activity, 0.001, executor, trim).run())
            await asyncio.wait_for(done.wait(), timeout=30)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(drive())
    return trimmed_at


def test_trims_once_per_idle_spell_and_never_while_busy() -> None:
    # busy (1, 2, 3), idle at 3: one trim; busy again (5, 8), idle at 8: one more
    assert _run_trim([0, 1, 2, 3, 3, 3, 3, 5, 8, 8, 8]) == [3, 8]


def test_an_idle_start_trims_once_what_loading_left() -> None:
    assert _run_trim([7, 7, 7, 7]) == [7]


def test_a_busy_node_is_never_trimmed() -> None:
    assert _run_trim(list(range(12)), extra_looks=0) == []


def test_nothing_runs_without_a_trim_call() -> None:
    async def drive() -> None:
        with ThreadPoolExecutor(max_workers=1) as executor:
            trim = IdleHeapTrim(lambda: 0, 0.01, executor, trim=None)
            await asyncio.wait_for(trim.run(), timeout=1)  # returns at once
            assert trim.trims == 0

    asyncio.run(drive())


def test_glibc_malloc_trim_is_found_and_runs() -> None:
    """The service's platform (Linux, glibc) has the call; elsewhere ``malloc_trim`` is None."""
    assert malloc_trim is not None
    garbage = [bytearray(64 * 1024) for _ in range(256)]  # 16 MiB on the heap, then freed
    del garbage
    assert malloc_trim() in (0, 1)
