"""Iterate an async iterator from synchronous code, on a private event loop in a background thread.

The sync client's ``stream`` uses it so that one asyncio engine serves both clients. Items cross
through a small queue (the engine waits while the caller is busy with an item, without blocking
its loop: keepalive pings still go out); an exception in the engine is raised in the caller;
leaving the loop early (``break``, an exception, ``close()``) cancels the engine and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TypeVar

__all__ = ["iterate_in_thread"]

T = TypeVar("T")
_DONE = object()


def iterate_in_thread(
    make: Callable[[], AsyncGenerator[T, None]], buffer: int = 4
) -> Generator[T, None, None]:
    """Yield the items of ``make()`` (called on the background loop) as they come; the generator
    is closed on that loop, so a caller that leaves early leaves no task pending."""
    items: queue.Queue[object] = queue.Queue(maxsize=buffer)
    loop = asyncio.new_event_loop()
    task: asyncio.Task[None] | None = None
    started = threading.Event()

    async def pump() -> None:
        try:
            async with contextlib.aclosing(make()) as generated:
                async for item in generated:
                    await asyncio.to_thread(items.put, item)
        except BaseException as exc:  # the caller re-raises it (cancellation included)
            await asyncio.to_thread(items.put, exc)
            return
        await asyncio.to_thread(items.put, _DONE)

    def run() -> None:
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(pump())
        started.set()
        try:
            loop.run_until_complete(task)
        except BaseException:  # cancelled: the caller left early
            pass
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="tdmi-stream", daemon=True)
    thread.start()
    started.wait()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        if thread.is_alive():
            assert task is not None
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the engine is done
                loop.call_soon_threadsafe(task.cancel)
            while thread.is_alive():  # let the engine finish its put, then its cleanup
                with contextlib.suppress(queue.Empty):
                    items.get(timeout=0.1)
        thread.join()
