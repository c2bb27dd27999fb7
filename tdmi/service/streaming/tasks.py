"""Ending tasks for good (a stream's, a node's loops, a worker's job runs): cancelled, then awaited
until every one is done.

On Python 3.11 a cancellation can be lost: ``asyncio.wait_for`` returns its awaitable's result
instead of raising when that finished in the same loop turn as the cancel (fixed in 3.12), and
redis-py wraps every command in it. A task that lost its cancel goes on (a stream's handler then
waits for a message that never comes), so a plain ``gather`` after ``cancel`` could wait forever
and the stream never end. Cancelling again until the task is done ends it at its next await.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]

RECANCEL_S = 0.5  # how long a cancelled task has to end before it is cancelled again


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and return once all are done; their results and errors are dropped."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" when it is collected
