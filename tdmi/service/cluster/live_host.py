"""A worker's side of live streams: reads its inbox, runs one ``LocalFeed`` per pinned stream.

Each stream has its own task that applies its operations in order, so a slow stream (decoding,
a full batcher) never holds up the others; replies go to the Stream of the API node holding the
WebSocket. Streams whose API node stopped beating are closed.

An API node sends a stream at most ``lookahead + FRAMES_AHEAD`` frames ahead of their answers
(``tdmi.service.cluster.remote_feed``), so a stream's queue of operations here stays that short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from tdmi.protocol.stream import ErrorMessage, ResultMessage
from tdmi.service.cluster import keys
from tdmi.service.cluster.connection import TRANSIENT, follow
from tdmi.service.cluster.messages import OPERATION, CloseOp, EndOp, FeedClosed, FrameOp, OpenOp
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.feed import FeedConfigError, LocalFeed

__all__ = ["LiveHost"]

log = logging.getLogger("tdmi.cluster.live")
REPLIES_MAXLEN = 10_000  # per API node; a node reads its replies within milliseconds

FeedMaker = Callable[..., LocalFeed]  # (stream_id, on_error) -> LocalFeed


class _Hosted:
    def __init__(self, open_op: OpenOp):
        self.open_op = open_op
        # None: the stream is closed (its loop ends there even if its cancel was lost: see
        # tdmi.service.streaming.tasks)
        self.ops: asyncio.Queue[tuple[FrameOp | EndOp, bytes] | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.serving = False  # opened on this worker (counted in active_streams)


class LiveHost:
    def __init__(self, redis: Redis, worker_id: str, make_feed: FeedMaker, metrics: ServiceMetrics):
        self.redis, self.worker_id, self.make_feed, self.metrics = redis, worker_id, make_feed, metrics
        self.streams: dict[str, _Hosted] = {}

    async def run(self) -> None:
        """Read the inbox from its start: the key is this worker's own and new."""
        async for fields in follow(
            self.redis, keys.inbox(self.worker_id), "0", "live inbox", count=256, trim=True
        ):
            self._dispatch(fields)

    async def reap(self) -> None:
        """Close streams whose API node is gone (its WebSockets died with it)."""
        for stream_id, hosted in list(self.streams.items()):
            with contextlib.suppress(*TRANSIENT):
                if not await self.redis.exists(keys.api_node(hosted.open_op.api_node)):
                    log.info("stream %s: its API node %s is gone", stream_id, hosted.open_op.api_node)
                    await self._close(stream_id)

    async def stop(self) -> None:
        for stream_id in list(self.streams):
            await self._close(stream_id)

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        try:
            op = OPERATION.validate_json(fields[b"op"])
        except (KeyError, ValidationError) as exc:  # written by our API nodes: a version mismatch
            log.error("bad inbox entry: %s", exc)
            return
        if isinstance(op, OpenOp):
            if op.stream_id in self.streams:
                return
            hosted = self.streams[op.stream_id] = _Hosted(op)
            hosted.tasks.append(asyncio.create_task(self._serve(hosted), name=f"live-{op.stream_id}"))
        elif isinstance(op, CloseOp):
            self._stop_serving(op.stream_id)  # the stream's own task cleans up as it ends
        elif (hosted_stream := self.streams.get(op.stream_id)) is not None:
            hosted_stream.ops.put_nowait((op, fields.get(b"data", b"")))

    async def _serve(self, hosted: _Hosted) -> None:
        stream_id, reply_to = hosted.open_op.stream_id, keys.replies(hosted.open_op.api_node)

        async def send(message: BaseModel) -> None:
            await self.redis.xadd(
                reply_to,
                {"stream": stream_id, "worker": self.worker_id, "msg": message.model_dump_json()},
                maxlen=REPLIES_MAXLEN,
                approximate=True,
            )

        async def on_error(kind: str, detail: str, frame_id: int | None) -> None:
            await send(ErrorMessage(error=kind, detail=detail, frame_id=frame_id))

        feed = self.make_feed(stream_id, on_error)
        try:
            try:
                await send(await feed.open(hosted.open_op.config))
            except FeedConfigError as exc:
                await send(ErrorMessage(error=exc.kind, detail=str(exc)))
                await send(FeedClosed())
                return
            hosted.serving = True
            self.metrics.active_streams.inc()
            pump = asyncio.create_task(self._pump(feed, send))
            hosted.tasks.append(pump)
            while (item := await hosted.ops.get()) is not None:
                op, data = item
                if isinstance(op, EndOp):
                    await feed.end()
                    break
                await feed.push(data, op.frame_id, op.timestamp, op.boxes, op.skip_reason)
            else:
                return  # closed
            await pump
            await send(FeedClosed())
        except TRANSIENT as exc:
            log.warning("stream %s: lost redis (%s); closing it", stream_id, exc)
        finally:
            await feed.close()
            self.streams.pop(stream_id, None)
            if hosted.serving:
                self.metrics.active_streams.dec()

    async def _pump(self, feed: LocalFeed, send: Callable[[BaseModel], Awaitable[None]]) -> None:
        async for reply in feed.replies():
            if isinstance(reply, ResultMessage):
                self.metrics.frames.labels("live").inc()
            await send(reply)

    def _stop_serving(self, stream_id: str) -> list[asyncio.Task[None]]:
        hosted = self.streams.get(stream_id)
        if hosted is None:
            return []
        hosted.ops.put_nowait(None)
        for task in hosted.tasks:
            task.cancel()
        return list(hosted.tasks)

    async def _close(self, stream_id: str) -> None:
        await asyncio.gather(*self._stop_serving(stream_id), return_exceptions=True)
