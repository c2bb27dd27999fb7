"""``client.sources``: cameras the server pulls, through the SDK (sync and async) against the
service around a fake node whose cameras are ``FakeCamera`` (the real routes, URL policy, viewers);
and the viewer messages a fake camera never causes (a ``dropped`` notice, a slow viewer's close)
from a small WebSocket server of the test's own."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tdmi.client import (
    AsyncCameraSources,
    AsyncPoseClient,
    AuthError,
    BadRequest,
    CameraSources,
    PoseClient,
    ServerError,
    ServerUnreachable,
    StreamClosed,
    StreamError,
)
from tdmi.client.camera_sources import watch_source
from tdmi.protocol import JobResultPublic, PersonPose
from tdmi.protocol.sources import SourceInfo, SourceStatusMessage, ViewerDroppedMessage
from tdmi.protocol.stream import ErrorMessage, ResultMessage
from tests.clients.conftest import ADMIN_KEY, API_KEY, CAMERA_URL, MAX_SOURCES
from tests.helpers.fake_node import FAKE_CAMERA_SIZE
from tests.helpers.in_process import ServedApp
from tests.helpers.waits import until


def test_a_camera_is_added_listed_watched_and_removed(camera_service: ServedApp) -> None:
    with PoseClient(camera_service.base, api_key=ADMIN_KEY) as client:
        created = client.sources.add(CAMERA_URL, lookahead=0, max_fps=20)
        source_id = created.source_id
        assert created.status in ("connecting", "live")
        assert created.links.self == f"{camera_service.base}/v1/sources/{source_id}"
        assert created.links.results.startswith("ws://") and created.links.overlay.endswith("/overlay")

        until(lambda: client.sources.get(source_id).frames_processed >= 2, "frames processed", timeout=30)
        info = client.sources.get(source_id)
        assert isinstance(info, SourceInfo) and info.status == "live" and info.url == CAMERA_URL
        assert (info.lookahead, info.max_fps) == (0, 20)
        assert (info.height, info.width) == FAKE_CAMERA_SIZE
        assert [s.source_id for s in client.sources.list()] == [source_id]

        watch = client.sources.watch(source_id)
        first = next(watch)
        assert isinstance(first, SourceStatusMessage)
        assert (first.source_id, first.status) == (source_id, "live")
        results = [m for m in itertools.islice(watch, 6) if isinstance(m, ResultMessage)]
        assert len(results) >= 5  # a dropped notice at most: this viewer keeps up
        assert all(b.frame_id > a.frame_id for a, b in itertools.pairwise(results))
        assert all(len(r.persons) == 1 and isinstance(r.persons[0], PersonPose) for r in results)
        assert all(r.timestamp is not None for r in results)

        removed = client.sources.remove(source_id)
        assert removed.source_id == source_id and removed.status == "stopped"
        rest = list(watch)  # the watch ends by itself: the source stopped
        assert isinstance(rest[-1], SourceStatusMessage) and rest[-1].status == "stopped"
        assert all(isinstance(m, ResultMessage) for m in rest[:-1])
        assert client.sources.list() == []
        for gone in (
            lambda: client.sources.get(source_id),
            lambda: client.sources.remove(source_id),
            lambda: next(client.sources.watch(source_id)),
        ):
            with pytest.raises(BadRequest) as unknown:
                gone()
            assert (unknown.value.status, unknown.value.kind) == (404, "not_found")
            assert f"no source {source_id}" in str(unknown.value)


def test_a_recorded_camera_is_read_back_by_time_range_while_it_runs_and_after(
    camera_service: ServedApp,
) -> None:
    with PoseClient(camera_service.base, api_key=ADMIN_KEY) as client:
        since = time.time()
        source_id = client.sources.add(CAMERA_URL, lookahead=0, record=True).source_id
        # the lines reach the disk on a thread of their own: read until some are there
        until(lambda: len(client.sources.recorded(source_id, since).frames) >= 4, "frames recorded", 30)
        now = time.time()
        running = client.sources.recorded(source_id, since, now)
        assert isinstance(running, JobResultPublic) and running.job_id == source_id
        assert running.frames and all(since <= f.pts <= now for f in running.frames)

        client.sources.remove(source_id)  # its recording stays readable
        until_now = time.time()
        result = client.sources.recorded(source_id, since, until_now)
        ids, times = [f.index for f in result.frames], [f.pts for f in result.frames]
        assert len(ids) >= len(running.frames) and all(b > a for a, b in itertools.pairwise(ids)), ids
        assert all(since <= t <= until_now for t in times) and times == sorted(times)
        assert all(len(f.persons) == 1 for f in result.frames)

        half = len(times) // 2  # any kind of time says the same instant: naive is UTC
        middle = (times[half - 1] + times[half]) / 2
        aware = datetime.fromtimestamp(middle, timezone(timedelta(hours=5)))
        for start in (middle, aware, aware.astimezone(UTC).replace(tzinfo=None), aware.isoformat()):
            later = client.sources.recorded(source_id, start, until_now)
            assert [f.index for f in later.frames] == ids[half:], start
        coco = client.sources.recorded(source_id, since, format="coco")
        assert isinstance(coco, list) and sorted({e["image_id"] for e in coco}) == ids
        posetrack = client.sources.recorded(source_id, since, format="posetrack")
        assert isinstance(posetrack, dict) and posetrack["annotations"]

        for start, end, status, kind in [
            (until_now, since, 422, "bad_range"),
            ("yesterday", None, 422, "bad_time"),
        ]:
            with pytest.raises(BadRequest) as refused:
                client.sources.recorded(source_id, start, end)
            assert (refused.value.status, refused.value.kind) == (status, kind)
        unrecorded = client.sources.add(CAMERA_URL, lookahead=0).source_id
        with pytest.raises(BadRequest) as nothing:
            client.sources.recorded(unrecorded, since)
        assert (nothing.value.status, nothing.value.kind) == (404, "not_found")


def test_the_async_client_adds_watches_and_removes_a_camera(camera_service: ServedApp) -> None:
    since = time.time()

    async def run() -> tuple[list[object], list[SourceInfo], SourceInfo, JobResultPublic]:
        async with AsyncPoseClient(camera_service.base, api_key=ADMIN_KEY) as client:
            created = await client.sources.add(CAMERA_URL, lookahead=0, record=True)
            seen: list[object] = []
            async for message in client.sources.watch(created.source_id):
                seen.append(message)
                if sum(isinstance(m, ResultMessage) for m in seen) == 3:
                    break
            listed = await client.sources.list()
            assert (await client.sources.get(created.source_id)).source_id == created.source_id
            removed = await client.sources.remove(created.source_id)
            return seen, listed, removed, await client.sources.recorded(created.source_id, since)

    seen, listed, removed, recorded = asyncio.run(run())
    assert isinstance(seen[0], SourceStatusMessage)
    assert [type(m) for m in seen[1:]].count(ResultMessage) == 3
    assert [s.source_id for s in listed] == [removed.source_id] and removed.status == "stopped"
    watched = {m.frame_id for m in seen if isinstance(m, ResultMessage)}
    assert recorded.job_id == removed.source_id and watched <= {f.index for f in recorded.frames}


def test_refusals_raise_the_sdks_exceptions_with_the_servers_words(camera_service: ServedApp) -> None:
    with PoseClient(camera_service.base, api_key=API_KEY) as user:
        with pytest.raises(BadRequest) as not_admin:
            user.sources.add(CAMERA_URL)
        assert (not_admin.value.status, not_admin.value.kind) == (403, "forbidden")
        assert "admin" in not_admin.value.detail
    with PoseClient(camera_service.base, api_key="wrong") as stranger:
        with pytest.raises(AuthError):
            stranger.sources.list()
        with pytest.raises(AuthError, match="API key"):
            next(stranger.sources.watch("any"))
    with PoseClient(camera_service.base, api_key=ADMIN_KEY) as admin:
        with pytest.raises(BadRequest) as refused:
            admin.sources.add("rtsp://127.0.0.1:6379/x")  # the server's own loopback
        assert (refused.value.status, refused.value.kind) == (403, "source_refused")
        with pytest.raises(BadRequest) as bad_option:
            admin.sources.add(CAMERA_URL, lookahead=-1)
        assert bad_option.value.status == 422
        for _ in range(MAX_SOURCES):
            admin.sources.add(CAMERA_URL)
        with pytest.raises(BadRequest) as too_many:
            admin.sources.add(CAMERA_URL)
        assert (too_many.value.status, too_many.value.kind) == (429, "too_many_sources")
        with pytest.raises(BadRequest) as traversal:
            admin.sources.get("../pose/x")  # the id stays one path segment: never the job route
        assert traversal.value.status == 404 and "job" not in str(traversal.value)


def test_a_server_that_is_down_raises_server_unreachable(dead_url: str) -> None:
    with PoseClient(dead_url) as client:
        with pytest.raises(ServerUnreachable):
            client.sources.list()
        with pytest.raises(ServerUnreachable):
            next(client.sources.watch("any"))


def test_the_sync_and_async_sources_take_the_same_arguments() -> None:
    for name in ("add", "list", "get", "watch", "remove", "recorded"):
        sync = inspect.signature(getattr(CameraSources, name))
        async_ = inspect.signature(getattr(AsyncCameraSources, name))
        assert [(p.name, p.kind, str(p.annotation)) for p in sync.parameters.values()] == [
            (p.name, p.kind, str(p.annotation)) for p in async_.parameters.values()
        ], name


# ---------------------------------------------------------------- a viewers' WebSocket of the test's own

STATUS = SourceStatusMessage(source_id="s1", status="live")
RESULT = ResultMessage(frame_id=7, timestamp=1.5, persons=[], latency_ms=3.0)
DROPPED = ViewerDroppedMessage(count=4)


@asynccontextmanager
async def _viewer_socket(talk: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        await talk(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/sources/s1/results"


async def _watched(talk: Callable[[ServerConnection], Awaitable[None]]) -> list[object]:
    async with _viewer_socket(talk) as url:
        return [message async for message in watch_source(url, {})]


def test_every_viewer_message_is_typed_and_a_close_after_them_ends_the_watch() -> None:
    async def talk(ws: ServerConnection) -> None:
        for message in (STATUS, RESULT, DROPPED, RESULT.model_copy(update={"frame_id": 12})):
            await ws.send(message.model_dump_json())
        await ws.close(1000)

    seen = asyncio.run(_watched(talk))
    assert seen == [STATUS, RESULT, DROPPED, RESULT.model_copy(update={"frame_id": 12})]


@pytest.mark.parametrize(
    ("error", "code", "raised", "status"),
    [
        (ErrorMessage(error="client_behind", detail="results not read for 10 s"), 4008, StreamError, 0),
        (ErrorMessage(error="not_implemented", detail="embedded mode only"), 4501, ServerError, 501),
    ],
)
def test_an_error_before_the_close_is_raised(
    error: ErrorMessage, code: int, raised: type[ServerError], status: int
) -> None:
    async def talk(ws: ServerConnection) -> None:
        await ws.send(STATUS.model_dump_json())
        await ws.send(error.model_dump_json())
        await ws.close(code)

    with pytest.raises(raised) as caught:
        asyncio.run(_watched(talk))
    assert type(caught.value) is raised and caught.value.status == status  # not a BadRequest
    assert str(caught.value) == f"{error.error}: {error.detail}"


def test_a_close_without_a_reason_to_end_raises_stream_closed() -> None:
    async def talk(ws: ServerConnection) -> None:
        await ws.send(STATUS.model_dump_json())
        await ws.close(1011, "internal error")

    with pytest.raises(StreamClosed) as closed:
        asyncio.run(_watched(talk))
    assert closed.value.code == 1011
