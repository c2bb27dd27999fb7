"""The event loop's CPU time per source result with 1 viewer and with many, in-process.

The viewers' real route (``WS /v1/sources/{id}/results``, ``tdmi.service.api.sources``) runs once
per viewer on a Starlette ``WebSocket`` whose ASGI ``send`` only counts the messages, and the real
``Viewers`` fan-out publishes to them: what is measured is our per-result and per-viewer work (the
queues, the wake-ups, the time-boxed send), not the ASGI server's framing of each message (nor
its per-message deflate, which a viewer may negotiate), nor the network. A round publishes
``messages`` results, each after the previous one has reached every viewer, as a camera's results
come; the CPU time (``time.process_time``: this process has no other work) per result is the
round's. Rounds alternate between the viewer counts so that a machine busy with other work
slows them alike, and the medians are reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from types import SimpleNamespace
from typing import Any

from starlette.websockets import WebSocket

from tdmi.service.api.sources import watch_source
from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.viewers import Viewers

__all__ = ["fanout_cost"]

# a result of a few persons, about the size of one of the pedestrians clip's (the content is not read)
RESULT = (
    '{"type": "result", "frame_id": 1, "persons": ['
    + ",".join(['{"kp": [' + "0.5," * 160 + "0]}"] * 5)
    + "]}"
)
STATUS = '{"type": "status", "status": "live"}'


class _FakeSource:
    """What the route needs of a source: its viewers and its status message."""

    def __init__(self) -> None:
        self.viewers = Viewers(lambda count: None)

    def status_message(self) -> str:
        return STATUS


class _Counter:
    """Messages sent to all viewers; wakes the publisher once ``target`` have been."""

    def __init__(self) -> None:
        self.sent, self.target = 0, 0
        self.reached = asyncio.Event()

    def expect(self, target: int) -> asyncio.Event:
        self.target = target
        self.reached.clear()
        if self.sent >= target:
            self.reached.set()
        return self.reached

    def count(self) -> None:
        self.sent += 1
        if self.sent >= self.target:
            self.reached.set()


class _Connection:
    """One viewer's ASGI side: a connect, then a disconnect when the round ends; sends counted."""

    def __init__(self, sent: _Counter) -> None:
        self._sent = sent
        self._connected = False
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        await self.gone.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self._sent.count()


async def _round(viewers: int, messages: int) -> float:
    """CPU seconds per result published to ``viewers`` viewers of one source."""
    source = _FakeSource()
    sources = SimpleNamespace(
        settings=Settings(), metrics=ServiceMetrics(), get=lambda source_id, caller: source
    )
    sent = _Counter()
    connections = [_Connection(sent) for _ in range(viewers)]
    scope = {"type": "websocket", "path": "/v1/sources/bench/results", "headers": [], "query_string": b""}
    routes = [
        asyncio.create_task(
            watch_source(WebSocket(scope, c.receive, c.send), "bench", sources, Caller(None, True))  # type: ignore[arg-type]
        )
        for c in connections
    ]
    await sent.expect(viewers).wait()  # each viewer has its status message: all are waiting
    start = time.process_time()
    for n in range(1, messages + 1):
        source.viewers.publish(RESULT)
        await sent.expect(viewers * (n + 1)).wait()
    spent = time.process_time() - start
    for connection in connections:
        connection.gone.set()
    await asyncio.gather(*routes)
    return spent / messages


def fanout_cost(viewer_counts: list[int], messages: int = 2000, rounds: int = 7) -> dict[str, Any]:
    """Median µs of event-loop CPU per result for each viewer count, and per added viewer."""
    spent: dict[int, list[float]] = {count: [] for count in viewer_counts}

    async def run() -> None:
        await _round(max(viewer_counts), messages // 10)  # warm-up: imports, caches
        for _ in range(rounds):
            for count in viewer_counts:
                spent[count].append(await _round(count, messages))

    asyncio.run(run())
    medians = {count: 1e6 * statistics.median(times) for count, times in spent.items()}
    fewest, most = min(viewer_counts), max(viewer_counts)
    per_viewer = (medians[most] - medians[fewest]) / (most - fewest) if most > fewest else None
    return {
        "messages_per_round": messages,
        "rounds": rounds,
        "us_per_result": {str(count): medians[count] for count in viewer_counts},
        "us_per_result_rounds": {str(count): [1e6 * t for t in times] for count, times in spent.items()},
        "us_per_added_viewer": per_viewer,
    }
