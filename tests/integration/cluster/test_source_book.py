"""The Redis side of camera sources on a real redis-server, in-process: one worker holds a source's
lease at a time and loses it when it stops renewing; an API node's relay gives its viewers what a
worker published from the current message on, and a deleted source's viewers ``stopped``."""

from __future__ import annotations

import asyncio
import json

import pytest

from tdmi.protocol.sources import SourceCreate
from tdmi.service.auth import Caller
from tdmi.service.cluster import keys
from tdmi.service.cluster.connection import connect
from tdmi.service.cluster.sources import OVERLAY_LENGTH, SourceBook, SourceRecord
from tdmi.service.config import Settings
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.remote import RemoteSources
from tdmi.service.sources.viewers import VIEWER_QUEUE
from tests.helpers.redis_server import RedisServer

_DB = 14  # cluster tests count their databases up from 1, the job queue tests use 15
TTL_S = 0.3
OVERLAY_TTL_S = 1.0  # longer than a relay pass's wait for pictures (RELAY_BLOCK_MS)


def _record(source_id: str) -> SourceRecord:
    return SourceRecord(
        source_id, None, "rtsp://u:p@10.0.0.9/cam", "rtsp://10.0.0.9/cam", "tdmi-tiny", 1, None, 0.0
    )


def test_one_worker_holds_a_lease_until_it_stops_renewing(redis_server: RedisServer) -> None:
    redis_server.client(_DB).flushdb()

    async def scenario() -> None:
        book = SourceBook(connect(redis_server.url(_DB)), TTL_S)
        assert await book.take("gone", "w1") == 0  # no record: nothing to take
        await book.add(_record("s1"))
        assert await book.take("s1", "w1") == 1
        assert await book.take("s1", "w2") == 0  # held
        assert await book.renew("w1", ["s1"]) == set()
        assert await book.renew("w2", ["s1"]) == {"s1"}  # w2 never held it
        await asyncio.sleep(TTL_S * 2)  # w1 died: no renewal
        assert await book.renew("w1", ["s1"]) == {"s1"}
        assert await book.take("s1", "w2") == 2  # taken a second time: it moved
        await book.release("w1", ["s1"])  # not w1's any more: w2 keeps it
        assert await book.take("s1", "w1") == 0
        await book.release("w2", ["s1"])
        assert await book.take("s1", "w1") == 3
        assert [r.url for r in await book.records()] == ["rtsp://u:p@10.0.0.9/cam"]
        assert await book.remove("s1", "{}") and not await book.remove("s1", "{}")
        assert await book.count() == 0 and await book.renew("w1", ["s1"]) == {"s1"}
        await book.redis.aclose()

    asyncio.run(scenario())


async def _api_node(redis_server: RedisServer, ttl_s: float = TTL_S) -> tuple[SourceBook, RemoteSources]:
    """An API node's sources on an empty database (close ``book.redis`` after)."""
    await (book := SourceBook(connect(redis_server.url(_DB)), ttl_s)).redis.flushdb()
    settings = Settings(source_allowed_networks=["127.0.0.1/32"])
    return book, RemoteSources(settings, ServiceMetrics(), _Catalog(), book)


async def _publish_results(book: SourceBook, source_id: str, frame_ids: range) -> None:
    for frame_id in frame_ids:
        await book.publish(source_id, json.dumps({"type": "result", "frame_id": frame_id}))


def test_viewers_on_an_api_node_get_the_workers_messages_then_stopped(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        book, sources = await _api_node(redis_server)
        caller = Caller(owner=None)
        source = await sources.add(SourceCreate(url="rtsp://127.0.0.1:8554/cam"), caller)
        await _publish_results(book, source.source_id, range(1))  # before anyone watched
        viewer = source.viewers.join()
        await sources.relay()  # finds the new viewer: it starts after the newest message
        await _publish_results(book, source.source_id, range(1, 3))
        await sources.relay()
        await book.write_state(source.source_id, {"status": "live", "frames_processed": 2})
        await sources.refresh()
        assert sources.get(source.source_id, caller) is source and source.status() == "live"
        assert source.stats().frames_processed == 2
        assert await sources.delete(source.source_id, caller) is source
        received = []
        while (text := await viewer.next()) is not None:
            received.append(json.loads(text))
        assert [m.get("frame_id") for m in received[:2]] == [1, 2]
        assert received[2:] == [
            {"type": "status", "source_id": source.source_id, "status": "stopped", "detail": None}
        ]
        assert sources.list(caller) == [] and await book.count() == 0
        await book.redis.aclose()

    asyncio.run(scenario())


def test_a_slow_viewer_on_an_api_node_loses_results_with_a_notice(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        book, sources = await _api_node(redis_server)
        source = await sources.add(SourceCreate(url="rtsp://127.0.0.1:8554/cam"), Caller(owner=None))
        viewer = source.viewers.join()
        await sources.relay()
        await _publish_results(book, source.source_id, range(VIEWER_QUEUE + 5))  # none read meanwhile
        await sources.relay()
        first, second = json.loads(await viewer.next() or ""), json.loads(await viewer.next() or "")
        assert (first["type"], first["count"]) == ("dropped", 5) and second["frame_id"] == 5
        await book.redis.aclose()

    asyncio.run(scenario())


def test_an_overlay_crosses_redis_only_while_watched_and_two_pictures_at_most(
    redis_server: RedisServer,
) -> None:
    """The API node raises the watched flag for its watchers and shows them the worker's newest
    picture; Redis keeps two pictures whatever the worker sends; unwatched, flag and pictures lapse."""

    async def scenario() -> None:
        book, sources = await _api_node(redis_server, OVERLAY_TTL_S)
        source = await sources.add(SourceCreate(url="rtsp://127.0.0.1:8554/cam"), Caller(owner=None))
        source_id = source.source_id
        await book.publish_overlay(source_id, b"old")  # from an earlier watch: not shown
        await sources.relay_overlays()
        assert await book.overlays_watched([source_id]) == set()  # nobody watches: nothing drawn
        watching = source.overlay.frames()
        first = asyncio.create_task(anext(watching))
        await asyncio.sleep(0)  # the watcher is counted
        await sources.relay_overlays()
        assert await book.overlays_watched([source_id]) == {source_id}
        for number in range(5):  # the worker draws while it sees the flag
            await book.publish_overlay(source_id, b"jpeg %d" % number)
        assert await book.redis.xlen(keys.source_overlay(source_id)) == OVERLAY_LENGTH
        await sources.relay_overlays()
        assert await first == b"jpeg 4"  # the newest of what came, the old one never
        await watching.aclose()
        await sources.relay_overlays()  # nobody watches here now: the flag is not renewed
        await asyncio.sleep(OVERLAY_TTL_S * 2)
        assert await book.overlays_watched([source_id]) == set()
        assert not await book.redis.exists(keys.source_overlay(source_id))  # the pictures went too
        again = source.overlay.frames()
        waiting = asyncio.create_task(anext(again))
        await asyncio.sleep(0)
        await sources.delete(source_id, Caller(owner=None))
        with pytest.raises(StopAsyncIteration):  # a deleted source ends its overlay watchers
            await waiting
        await book.redis.aclose()

    asyncio.run(scenario())


class _Catalog:
    """The one model the cluster serves (its catalog's ``get``)."""

    class _Model:
        name = "tdmi-tiny"

    def get(self, name: str | None) -> _Model:
        return self._Model()
