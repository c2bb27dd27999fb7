"""The fan-out of a source's messages: a slow viewer loses its oldest results, with one notice,
and never its status events; the others get everything, in order."""

from __future__ import annotations

import asyncio
import json

from tdmi.service.sources.viewers import Viewer, Viewers


async def _drain(viewer: Viewer, count: int) -> list[dict]:
    return [json.loads(await viewer.next() or "null") for _ in range(count)]


def test_a_slow_viewer_loses_its_oldest_results_and_is_told_once() -> None:
    async def scenario() -> None:
        dropped: list[int] = []
        viewers = Viewers(dropped.append, limit=4)
        slow, fast = viewers.join('{"type": "status", "n": 0}'), viewers.join()
        got_fast = []
        for n in range(1, 11):
            viewers.publish(json.dumps({"type": "result", "n": n}))
            got_fast.append(json.loads(await fast.next() or "{}"))  # a viewer that keeps up
        assert [m["n"] for m in got_fast] == list(range(1, 11))
        first = await _drain(slow, 6)
        assert first[0] == {"type": "status", "n": 0}  # never dropped, though the oldest
        assert first[1] == {"type": "dropped", "count": 6, "reason": "viewer_behind"}
        assert [m["n"] for m in first[2:]] == [7, 8, 9, 10]  # the newest ones
        assert sum(dropped) == 6 and slow.dropped == 6 and fast.dropped == 0

    asyncio.run(scenario())


def test_status_events_are_kept_when_the_queue_is_full_of_results() -> None:
    async def scenario() -> None:
        viewers = Viewers(lambda n: None, limit=2)
        viewer = viewers.join()
        for n in range(3):
            viewers.publish(json.dumps({"type": "result", "n": n}))
        viewers.publish('{"type": "status", "status": "reconnecting"}', droppable=False)
        viewers.publish(json.dumps({"type": "result", "n": 3}))
        messages = await _drain(viewer, 4)
        kinds = [m["type"] for m in messages]
        assert kinds == ["dropped", "result", "status", "result"]
        assert messages[0]["count"] == 2 and [messages[1]["n"], messages[3]["n"]] == [2, 3]

    asyncio.run(scenario())


def test_a_new_viewer_starts_at_the_current_message_and_a_closed_one_ends() -> None:
    async def scenario() -> None:
        viewers = Viewers(lambda n: None)
        viewers.publish('{"type": "result", "n": 1}')  # before anyone watches: nobody gets it
        viewer = viewers.join()
        viewers.publish('{"type": "result", "n": 2}')
        viewers.close_all()
        assert json.loads(await viewer.next() or "{}")["n"] == 2
        assert await viewer.next() is None
        assert len(viewers) == 0

    asyncio.run(scenario())


def test_a_viewer_that_left_ends_at_once_and_its_queue_is_dropped() -> None:
    async def scenario() -> None:
        viewers = Viewers(lambda n: None)
        left, staying = viewers.join(), viewers.join()
        waiting = asyncio.create_task(left.next())
        await asyncio.sleep(0)  # waiting for a message
        left.close(discard=True)
        assert await waiting is None  # woken: nothing to send to a viewer that left
        viewers.publish('{"type": "result", "n": 1}')
        assert await left.next() is None  # closed: a message published later is not queued
        viewers.leave(left)
        assert len(viewers) == 1 and json.loads(await staying.next() or "{}")["n"] == 1

    asyncio.run(scenario())


def test_discard_drops_what_was_queued() -> None:
    async def scenario() -> None:
        viewer = Viewers(lambda n: None).join('{"type": "status"}')
        viewer.offer('{"type": "result"}', droppable=True)
        viewer.close(discard=True)
        assert await viewer.next() is None

    asyncio.run(scenario())
