"""An API node's side of live streams: each WebSocket's feed is pinned to one worker.

``LiveLink`` (one per API node) reads the node's reply Stream and hands each reply to its
``RemoteFeed``. A feed picks the least-loaded live worker when the stream opens, never per frame.
If that worker stops beating, the feed answers the frames it had in flight with ``dropped``,
opens the stream on another worker, tells the client ``resumed``, and goes on.

A feed has at most ``lookahead + FRAMES_AHEAD`` frames in flight: a worker answers frame t once
frame t + lookahead is in, and frames beyond that wait here, on the WebSocket's reading, so that
neither Redis nor the worker holds more of one stream than that, however fast its client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from tdmi.protocol.stream import (
    ConfigMessage,
    DroppedMessage,
    ErrorMessage,
    ReadyMessage,
    ResultMessage,
    ResumedMessage,
)
from tdmi.service.backoff import Backoff
from tdmi.service.cluster import keys
from tdmi.service.cluster.connection import TRANSIENT, follow
from tdmi.service.cluster.messages import REPLY, CloseOp, EndOp, FeedClosed, FrameOp, OpenOp, Reply
from tdmi.service.cluster.registry import Registry, least_loaded
from tdmi.service.streaming.feed import ErrorSink, FeedConfigError, FeedReply, errors_ignored
from tdmi.service.streaming.tasks import cancel_and_wait
from tdmi.service.streaming.unanswered import UnansweredFrames

__all__ = ["LiveLink", "RemoteFeed"]

log = logging.getLogger("tdmi.cluster.live")
OPEN_TIMEOUT_S = 15.0
INBOX_MAXLEN = 10_000
FRAMES_AHEAD = 4  # frames in flight to the worker beyond those its lookahead holds back


class LiveLink:
    """The API node's connection to the workers for live streams."""

    def __init__(self, redis: Redis, node_id: str, registry: Registry, check_every_s: float):
        self.redis, self.node_id, self.registry = redis, node_id, registry
        self.check_every_s = check_every_s
        self.feeds: dict[str, RemoteFeed] = {}

    def feed(self, stream_id: str, on_error: ErrorSink) -> RemoteFeed:
        return RemoteFeed(stream_id, on_error, self)

    async def run(self) -> None:
        """Deliver replies to their feeds; replies that arrived while Redis was away are read too."""
        async for fields in follow(self.redis, keys.replies(self.node_id), "$", "live replies", count=512):
            feed = self.feeds.get(fields[b"stream"].decode())
            if feed is not None:
                try:
                    feed.on_reply(fields[b"worker"].decode(), REPLY.validate_json(fields[b"msg"]))
                except ValidationError as exc:
                    log.error("bad reply from a worker: %s", exc)

    async def send(self, worker_id: str, op: BaseModel, data: bytes = b"") -> None:
        await self.redis.xadd(
            keys.inbox(worker_id),
            {"op": op.model_dump_json(), "data": data},
            maxlen=INBOX_MAXLEN,
            approximate=True,
        )


class RemoteFeed:
    """A ``LiveFeed`` served by a worker over Redis."""

    def __init__(self, stream_id: str, on_error: ErrorSink, link: LiveLink):
        self.stream_id, self.on_error, self.link = stream_id, on_error, link
        self.worker_id: str | None = None
        self.config = ConfigMessage()
        self.lookahead = 0
        self.in_flight = UnansweredFrames()  # frames sent to the worker, not yet answered
        self._room = asyncio.Event()  # set when frames in flight are answered or lost
        self._room.set()
        self.next_frame_id = 0
        self.ended = False
        self._replies: asyncio.Queue[Reply | ResumedMessage] = asyncio.Queue()
        self._opening: asyncio.Future[ReadyMessage | ErrorMessage] | None = None
        self._lock = asyncio.Lock()  # frames wait while the stream moves to another worker
        self._watch: asyncio.Task[None] | None = None

    async def open(self, config: ConfigMessage) -> ReadyMessage:
        self.config = config
        self.link.feeds[self.stream_id] = self
        ready = await self._open_on_any(frozenset())
        self._watch = asyncio.create_task(self._watch_worker(), name=f"watch-{self.stream_id}")
        return ready

    async def push(
        self,
        data: bytes,
        frame_id: int,
        timestamp: float | None,
        boxes: list[list[float]] | None,
        skip_reason: str | None,
    ) -> None:
        while len(self.in_flight) >= self.lookahead + FRAMES_AHEAD:
            self._room.clear()
            await self._room.wait()
        async with self._lock:
            assert self.worker_id is not None, "open() first"
            self.in_flight.add(frame_id)
            self.next_frame_id = frame_id + 1
            op = FrameOp(
                stream_id=self.stream_id,
                frame_id=frame_id,
                timestamp=timestamp,
                boxes=boxes,
                skip_reason=skip_reason,
            )
            await self.link.send(self.worker_id, op, data)

    async def end(self) -> None:
        async with self._lock:
            self.ended = True
            if self.worker_id is not None:
                await self.link.send(self.worker_id, EndOp(stream_id=self.stream_id))

    async def replies(self) -> AsyncIterator[FeedReply]:
        while True:
            reply = await self._replies.get()
            if isinstance(reply, FeedClosed):
                return
            if isinstance(reply, ErrorMessage):
                await self.on_error(reply.error, reply.detail, reply.frame_id)
            elif isinstance(reply, ResultMessage | DroppedMessage | ResumedMessage):
                yield reply

    async def close(self) -> None:
        self.on_error = errors_ignored
        if self._watch is not None:
            await cancel_and_wait(self._watch)
        self.link.feeds.pop(self.stream_id, None)
        if self.worker_id is not None:
            with contextlib.suppress(*TRANSIENT):
                await self.link.send(self.worker_id, CloseOp(stream_id=self.stream_id))

    def on_reply(self, worker_id: str, reply: Reply) -> None:
        """Called by the link; replies of a worker the stream has left are ignored."""
        if worker_id != self.worker_id:
            return
        if self._opening is not None and not self._opening.done():
            if isinstance(reply, ReadyMessage | ErrorMessage):
                self._opening.set_result(reply)
            return
        if isinstance(reply, ResultMessage | DroppedMessage):
            self.in_flight.answer(reply.frame_id)
        elif isinstance(reply, ErrorMessage) and reply.frame_id is not None:
            self.in_flight.discard(reply.frame_id)  # a refused frame: no answer follows
        self._room.set()
        self._replies.put_nowait(reply)

    async def _open_on_any(self, exclude: frozenset[str]) -> ReadyMessage:
        """Pin the stream to the least-loaded live worker that serves its model."""
        tried = set(exclude)
        while True:
            worker = least_loaded(await self.link.registry.live(), self.config.model, frozenset(tried))
            if worker is None:
                raise FeedConfigError(
                    "no_workers", f"no live worker serves model {self.config.model or '(default)'}"
                )
            try:
                return await self._open_on(worker.worker_id)
            except TimeoutError:
                log.warning("stream %s: worker %s did not answer; trying another", self.stream_id, worker)
                tried.add(worker.worker_id)

    async def _open_on(self, worker_id: str) -> ReadyMessage:
        self.worker_id = worker_id
        self._opening = asyncio.get_running_loop().create_future()
        op = OpenOp(stream_id=self.stream_id, api_node=self.link.node_id, config=self.config)
        await self.link.send(worker_id, op)
        async with asyncio.timeout(OPEN_TIMEOUT_S):  # not wait_for: on 3.11 it may lose a cancel
            answer = await self._opening
        if isinstance(answer, ErrorMessage):
            raise FeedConfigError(answer.error, answer.detail)
        log.info("stream %s pinned to worker %s", self.stream_id, worker_id)
        self.lookahead = answer.lookahead
        return answer.model_copy(update={"stream_id": self.stream_id})

    async def _watch_worker(self) -> None:
        backoff = Backoff()
        while True:
            await asyncio.sleep(self.link.check_every_s)
            try:
                alive = self.worker_id is not None and await self.link.registry.alive(self.worker_id)
                backoff.reset()
            except TRANSIENT as exc:
                await backoff.wait(f"stream {self.stream_id}", exc)
                continue
            if not alive:
                await self._move()

    async def _move(self) -> None:
        async with self._lock:
            lost = self.worker_id
            reason = f"worker_lost: worker {lost} stopped"
            for frame_id in self.in_flight.clear():
                self._replies.put_nowait(DroppedMessage(frame_id=frame_id, reason=reason))
            self._room.set()
            try:
                await self._open_on_any(frozenset({lost} if lost else ()))
            except FeedConfigError as exc:
                self._replies.put_nowait(ErrorMessage(error=exc.kind, detail=f"{reason}; {exc}"))
                self._replies.put_nowait(FeedClosed())
                self.worker_id = None
                return
            log.info("stream %s moved from %s to %s", self.stream_id, lost, self.worker_id)
            self._replies.put_nowait(
                ResumedMessage(stream_id=self.stream_id, next_frame_id=self.next_frame_id, reason=reason)
            )
            if self.ended:
                await self.link.send(self.worker_id, EndOp(stream_id=self.stream_id))  # type: ignore[arg-type]
