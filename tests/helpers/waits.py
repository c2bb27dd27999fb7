"""Waiting in tests for what a real server does in its own time, with a deadline and a reason."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

__all__ = ["messages_until", "until"]


def until(predicate: Callable[[], bool], what: str, timeout: float = 600) -> float:
    """Seconds until ``predicate`` held; fails with ``what`` after ``timeout`` (a bound for a
    loaded CI machine, not a speed test)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, what
        time.sleep(0.1)
    return time.monotonic() - start


def messages_until(ws: ClientConnection, *kinds: str, timeout: float = 60) -> list[dict]:
    """Live-stream messages up to and including the first of a type in ``kinds``, acknowledging
    every result on the way."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        seen.append(message)
        if message["type"] in ("result", "dropped"):
            with contextlib.suppress(ConnectionClosed):  # after `end`, the server may be gone already
                ws.send(json.dumps({"type": "ack", "frame_id": message["frame_id"]}))
        if message["type"] in kinds:
            return seen
    raise AssertionError(f"no {kinds} message within {timeout} s; got {seen}")
