"""A node's loops (``tdmi.service.loops``): they survive any error, log a streak once, and tell readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tdmi.service.loops import Loops
from tdmi.service.nodes.node import Readiness


class _Dies(BaseException):
    """Not an ``Exception``: nothing may catch it, so the loop's task ends."""


def _run(timeout_s: float, body: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout_s))


def test_a_failing_loop_keeps_running_logs_once_and_is_not_ready_only_while_stalled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    readiness = Readiness("loading models")
    readiness.set(None)
    seen: list[str | None] = []
    calls = {"n": 0}
    failing_until = time.monotonic() + 1.0

    async def step() -> None:
        calls["n"] += 1
        seen.append(readiness.reason)
        if time.monotonic() < failing_until:
            raise KeyError("a bug that passes")

    async def body() -> None:
        loops = Loops(readiness.loop_trouble, stall_s=0.3)
        loops.start("sweep", step, every_s=0.05)
        while time.monotonic() < failing_until + 0.5:
            await asyncio.sleep(0.05)
        await loops.stop()

    with caplog.at_level(logging.INFO, logger="tdmi.loops"):
        _run(10, body)
    assert calls["n"] >= 10  # it never died: retried every 0.05 s (the interval caps the backoff)
    stalled = [reason for reason in seen if reason is not None]
    assert stalled and all(
        r.startswith("sweep failing for over 0.3 s: internal error (reference ") for r in stalled
    )
    assert seen[0] is None and seen[-1] is None  # ready before the streak was long, and after it
    messages = [r.getMessage() for r in caplog.records]
    assert sum("sweep failing (reference" in m for m in messages) == 1  # one line per streak
    assert sum("not ready until it runs again" in m for m in messages) == 1
    assert sum("sweep runs again after" in m for m in messages) == 1
    assert readiness.reason is None


def test_a_new_kind_of_failure_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    errors = [RedisConnectionError("Error 111 connecting to 10.0.0.7:6379.")] * 3 + [KeyError("x")] * 3

    async def step() -> None:
        if errors:
            raise errors.pop(0)
        await asyncio.sleep(3600)

    async def body() -> None:
        loops = Loops(lambda loop, reason: None, stall_s=60)
        loops.start("heartbeat", step, every_s=0.01)
        while errors:
            await asyncio.sleep(0.01)
        await loops.stop()

    with caplog.at_level(logging.WARNING, logger="tdmi.loops"):
        _run(10, body)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "the job store (redis) is unreachable" in lines[0] and "reference" in lines[1]


def test_a_loop_whose_task_ended_makes_the_node_not_ready() -> None:
    readiness = Readiness("loading models")
    readiness.set(None)

    async def step() -> None:
        raise _Dies

    async def body() -> None:
        loops = Loops(readiness.loop_trouble, stall_s=60)
        task = loops.start("job consumer", step)
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback
        assert readiness.reason == "job consumer stopped"
        await loops.stop()

    _run(10, body)


def test_readiness_shows_the_nodes_state_first_and_every_stalled_loop() -> None:
    readiness = Readiness("loading models")
    readiness.loop_trouble(
        "heartbeat", "heartbeat failing for over 30 s: the job store (redis) is unreachable"
    )
    assert readiness.reason == "loading models"
    readiness.set(None)
    readiness.loop_trouble("sweep", "sweep stopped")
    assert readiness.reason == (
        "heartbeat failing for over 30 s: the job store (redis) is unreachable; sweep stopped"
    )
    readiness.loop_trouble("heartbeat", None)
    readiness.loop_trouble("sweep", None)
    assert readiness.reason is None


def test_a_stop_ends_loops_whose_step_swallowed_the_cancellation() -> None:
    """A library may swallow a cancel (a Redis read whose own timeout expires as it arrives: the
    client retries the read); a stop must still end every loop, and soon."""
    swallowed: list[str] = []

    async def reads_on() -> None:  # the cancel swallowed, the retried read awaits again
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.append("reads on")
            await asyncio.sleep(60)

    async def returns() -> None:  # the cancel swallowed, the step returns as if it had run
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.append("returns")

    async def body() -> None:
        loops = Loops(lambda name, reason: None, stall_s=60)
        tasks = [loops.start("consumer", reads_on), loops.start("sweep", returns)]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await loops.stop()
        assert all(t.done() for t in tasks)
        assert time.monotonic() - started < 5  # a second cancel a second later, not the 60 s sleep

    _run(20, body)
    assert sorted(swallowed) == ["reads on", "returns"]
