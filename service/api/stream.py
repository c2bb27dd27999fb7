"""``WS /v1/stream``: live feeds. The protocol is documented in docs/websocket.md.

Two tasks per connection: the receiver decodes frames into the session (and reads control
messages), the sender delivers results in frame order within the client's ack window. The
transport's ping/pong (uvicorn ``ws_ping_interval``) detects dead peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.types import Message
from starlette.websockets import WebSocketState

from tdmi.protocol.stream import (
    AckMessage,
    BoxesMessage,
    ClientMessage,
    ConfigMessage,
    DroppedMessage,
    EndedMessage,
    EndMessage,
    ErrorMessage,
    ReadyMessage,
    ResultMessage,
    ResumedMessage,
    unpack_frame,
)
from tdmi.service.auth import is_authorised
from tdmi.service.config import Settings
from tdmi.service.deps import NodeDep
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.feed import ErrorSink, FeedConfigError, LiveFeed

__all__ = ["router"]

router = APIRouter()
log = logging.getLogger("tdmi.stream")
_CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
MAX_BAD_MESSAGES = 20
MAX_PENDING_BOXES = 64

# (stream id, error sink) -> the stream's feed; the app picks local or remote at start-up
FeedOpener = Callable[[str, ErrorSink], LiveFeed]


class _Closing(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class LiveStream:
    """State of one WebSocket connection: the protocol side; the feed does the pose work."""

    def __init__(self, ws: WebSocket, settings: Settings, metrics: ServiceMetrics, open_feed: FeedOpener):
        self.ws, self.settings, self.metrics = ws, settings, metrics
        self.stream_id = uuid.uuid4().hex[:12]
        self.feed: LiveFeed = open_feed(self.stream_id, self.error)
        self.ready: ReadyMessage | None = None
        self.ack_window = settings.ack_window
        self.unacked: deque[int] = deque()  # frame ids of results sent and not yet acknowledged
        self.sent = 0
        self.ack_changed = asyncio.Event()
        self.next_id = 0
        self.pending_boxes: dict[int, list[list[float]]] = {}
        self.arrivals: deque[float] = deque()
        self.arrived_at: dict[int, float] = {}  # frame id -> arrival here, for the latency
        self.bad_messages = 0
        self.frames = 0
        self.dropped = 0
        self.send_lock = asyncio.Lock()

    async def send(self, message: BaseModel) -> None:
        data = message.model_dump_json()
        async with self.send_lock:
            try:
                await asyncio.wait_for(self.ws.send_text(data), timeout=self.settings.ack_timeout_s)
            except TimeoutError:
                raise _Closing(4008, "client does not read its results") from None

    async def error(self, kind: str, detail: str, frame_id: int | None = None) -> None:
        self.bad_messages += 1
        self.metrics.errors.labels(f"ws_{kind}").inc()
        await self.send(ErrorMessage(error=kind, detail=detail, frame_id=frame_id))
        if self.bad_messages > MAX_BAD_MESSAGES:
            raise _Closing(4000, "too many bad messages")

    async def configure(self, config: ConfigMessage) -> None:
        if self.ready is not None:
            await self.error("invalid_message", "config must come before the first frame and only once")
            return
        try:
            self.ready = await self.feed.open(config)
        except FeedConfigError as exc:
            await self.error(exc.kind, str(exc))
            return
        self.ack_window = self.ready.ack_window
        await self.send(self.ready)

    async def on_text(self, text: str) -> bool:
        """Handle a control message; True when the client ended the stream."""
        try:  # pydantic's parser caps nesting and number length: no input raises anything else
            message = _CLIENT_MESSAGE.validate_json(text)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            if first["type"] == "json_invalid":
                await self.error("invalid_json", f"text message is not usable JSON: {first['msg']}")
            else:
                where = ".".join(str(p) for p in first["loc"])
                await self.error("invalid_message", f"{where}: {first['msg']}")
            return False
        if isinstance(message, ConfigMessage):
            await self.configure(message)
        elif isinstance(message, BoxesMessage):
            frame_id = self.next_id if message.frame_id is None else message.frame_id
            if len(self.pending_boxes) >= MAX_PENDING_BOXES:
                await self.error("invalid_boxes", f"boxes for more than {MAX_PENDING_BOXES} future frames")
            else:
                self.pending_boxes[frame_id] = message.boxes
        elif isinstance(message, AckMessage):
            while self.unacked and self.unacked[0] <= message.frame_id:
                self.unacked.popleft()
            self.ack_changed.set()
        elif isinstance(message, EndMessage):
            return True
        return False

    async def on_frame(self, data: bytes) -> None:
        image_bytes, frame_id, timestamp = unpack_frame(data)
        frame_id = self.next_id if frame_id is None else frame_id
        self.next_id = frame_id + 1
        if self.ready is None:
            if self.settings.require_config:
                await self.error("config_required", "send a config message before the first frame", frame_id)
                return
            await self.configure(ConfigMessage())
            if self.ready is None:
                return
        reason = self._rate_limited()
        if reason is None and self.frames - self.sent > 2 * self.ack_window + self.ready.lookahead:
            reason = "client_behind: results are not being read or acknowledged"
        self.frames += 1
        self.arrived_at[frame_id] = time.monotonic()
        boxes = self.pending_boxes.pop(frame_id, None)
        await self.feed.push(image_bytes, frame_id, timestamp, boxes, reason)

    def _rate_limited(self) -> str | None:
        now = time.monotonic()
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] < now - 1.0:
            self.arrivals.popleft()
        if len(self.arrivals) > self.settings.max_fps:
            return f"rate: more than {self.settings.max_fps:g} frames per second"
        return None

    async def deliver(self) -> None:
        """Send every reply in order, never more than ``ack_window`` unacknowledged results."""
        async for reply in self.feed.replies():
            if isinstance(reply, ResumedMessage):  # not a frame's answer: no ack needed
                await self.send(reply)
                continue
            await self._wait_for_window()
            start = time.perf_counter()
            await self.send(self._counted(reply))
            self.metrics.observe_stage("send", time.perf_counter() - start)
            self.sent += 1
            self.unacked.append(reply.frame_id)

    async def _wait_for_window(self) -> None:
        deadline = time.monotonic() + self.settings.ack_timeout_s
        while len(self.unacked) >= self.ack_window:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Closing(4008, f"no ack for {self.settings.ack_timeout_s:g} s with a full window")
            self.ack_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ack_changed.wait(), timeout=remaining)

    def _counted(self, reply: ResultMessage | DroppedMessage) -> BaseModel:
        """Count the reply; a result's latency is measured here, from the frame's arrival on this node."""
        arrived = self.arrived_at.pop(reply.frame_id, None)
        if isinstance(reply, ResultMessage):
            self.metrics.frames.labels("live").inc()
            if arrived is None:
                return reply
            return reply.model_copy(update={"latency_ms": (time.monotonic() - arrived) * 1000.0})
        self.dropped += 1
        self.metrics.frames_dropped.labels(reply.reason.split(":")[0]).inc()
        return reply


@router.websocket("/v1/stream")
async def stream(ws: WebSocket, node: NodeDep) -> None:
    settings = node.settings
    await ws.accept()
    if not is_authorised(settings, ws.headers, ws.query_params.get("api_key")):
        await _close(ws, 1008, "missing or wrong API key")
        return
    if node.readiness.reason is not None or not node.readiness.accepting:
        error = ErrorMessage(error="not_ready", detail=node.readiness.reason or "shutting down")
        await _close(ws, 1013, "not ready", error)
        return
    if len(node.streams) >= settings.max_streams:
        error = ErrorMessage(error="too_many_streams", detail=f"limit is {settings.max_streams}")
        await _close(ws, 4029, "too many concurrent streams", error)
        return
    live = LiveStream(ws, settings, node.metrics, node.open_feed)
    node.streams.add(live.stream_id, live)
    node.metrics.active_streams.inc()
    sender = asyncio.create_task(live.deliver())
    inbox = _Inbox(2 * settings.max_message_bytes)
    reader = asyncio.create_task(inbox.read(ws))
    code, reason = 1000, "stream ended"
    try:
        await _until_disconnect(reader, _receive(live, sender, inbox))
        await live.send(EndedMessage(frames=live.frames, dropped=live.dropped))
    except _Closing as exc:
        code, reason = exc.code, exc.reason
    except WebSocketDisconnect:
        code = 0
    except asyncio.CancelledError:
        code, reason = 1012, "server shutting down"
        raise
    except Exception:  # a fault of ours: the client learns it was not its doing (1011), the log has why
        log.exception("stream %s failed", live.stream_id)
        code, reason = 1011, "internal error"
    finally:
        # the slot goes first: a client that reconnects at once finds it free
        node.streams.discard(live.stream_id)
        node.metrics.active_streams.dec()
        for task in (sender, reader):
            task.cancel()
        await asyncio.gather(sender, reader, return_exceptions=True)
        await live.feed.close()
        if code and ws.application_state != WebSocketState.DISCONNECTED:
            await _close(ws, code, reason)


async def _close(ws: WebSocket, code: int, reason: str, error: ErrorMessage | None = None) -> None:
    """Close (after ``error``, if any). A client that has already gone is no fault of ours: one
    that connected and dropped, or one that read ``ended`` and closed first, crossing our close."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if error is not None:
            await ws.send_text(error.model_dump_json())
        await ws.close(code, reason)


class _Inbox:
    """Messages read ahead of their handling, so that a client's disconnect is seen at once.

    Handling a frame can take a while (decoding, the detector); a disconnect read only after the
    frames queued before it would keep the stream's slot for that long. Read-ahead stops at
    ``max_bytes`` of unhandled messages, so a fast sender is still held back by TCP.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.size = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read(self, ws: WebSocket) -> int:
        """Read until the client disconnects; returns its close code."""
        while True:
            await self.room.wait()
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code", 1000))
            self.size += _size(message)
            if self.size > self.max_bytes:
                self.room.clear()
            self.messages.put_nowait(message)

    async def get(self) -> Message:
        message = await self.messages.get()
        self.size -= _size(message)
        if self.size <= self.max_bytes:
            self.room.set()
        return message


def _size(message: Message) -> int:
    return len(message.get("bytes") or b"") + len(message.get("text") or "")


async def _until_disconnect(reader: asyncio.Task[int], work: Coroutine[Any, Any, None]) -> None:
    """Run ``work``; a disconnect seen by ``reader`` meanwhile cancels it (``WebSocketDisconnect``)."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.done() and not task.cancelled():
        task.result()
        return
    raise WebSocketDisconnect(reader.result())


async def _receive(live: LiveStream, sender: asyncio.Task[None], inbox: _Inbox) -> None:
    """Handle messages until every result after ``end`` is delivered; acks keep coming meanwhile.

    A failed sender (a client that does not read or ack) closes the connection.
    """
    ended = False
    while True:
        receive = asyncio.ensure_future(inbox.get())
        done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            receive.cancel()
            sender.result()  # raises _Closing
            return
        message = receive.result()
        if message.get("bytes") is not None:
            if ended:
                await live.error("invalid_message", "frame after end")
            else:
                await live.on_frame(message["bytes"])
        elif message.get("text") is not None and await live.on_text(message["text"]) and not ended:
            ended = True
            if live.ready is None:
                return
            await live.feed.end()  # the sender finishes once the last result is acknowledged
        live.ack_changed.set()  # wakes a sender waiting for the session to exist
