"""``WS /v1/stream``: live feeds. The protocol is documented in docs/websocket.md.

Three tasks per connection: the reader reads messages ahead of their handling (and applies
acks at once: a handler held up by its frames must not make the client look behind), the
handler decodes frames into the feed and applies the other control messages in order, the sender
delivers results in frame order within the client's ack window. The transport's ping/pong
(uvicorn ``ws_ping_interval``) detects dead peers.

Whatever a client does, a stream's memory stays bounded: at most twice ``max_message_bytes`` of
messages read ahead, the feed's window of decoded frames, and ``2 x (2 x ack_window + lookahead)``
frames waiting for their answer, which hold no image. A client that does not read or acknowledge
is dropped (``client_behind``), then closed with 4008, after that many frames or ``ack_timeout_s``,
whichever comes first; every send and the close itself are time-boxed, so a client whose TCP
window is full cannot hold the stream open. A stream silent for ``ws_idle_timeout_s`` is closed
with 4000.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

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
from tdmi.service.client_text import shown
from tdmi.service.config import Settings
from tdmi.service.deps import Authorised, ReadyNodeDep
from tdmi.service.errors import ApiError, close_websocket
from tdmi.service.metrics import NO_CPU, CpuSpan, ServiceMetrics
from tdmi.service.streaming.feed import ErrorSink, FeedConfigError, LiveFeed
from tdmi.service.streaming.tasks import cancel_and_wait
from tdmi.service.streaming.unanswered import UnansweredFrames

__all__ = ["router"]

router = APIRouter()
log = logging.getLogger("tdmi.stream")
_CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
MAX_BAD_MESSAGES = 20
MAX_PENDING_BOXES = 64
MESSAGE_COST_BYTES = 256  # what a message read ahead costs at least, however short its payload

# (stream id, error sink) -> the stream's feed; the app picks local or remote at start-up
FeedOpener = Callable[[str, ErrorSink], LiveFeed]
# a message as read: an encoded frame, a control message, or text that is not one
Inbound = bytes | ClientMessage | ValidationError


class _Closing(Exception):
    """Ends the stream with ``code``; ``error`` goes first, where the client still reads."""

    def __init__(self, code: int, reason: str, error: ErrorMessage | None = None):
        super().__init__(reason)
        self.code, self.reason, self.error = code, reason, error


def _client_behind(detail: str) -> _Closing:
    return _Closing(4008, "client behind", ErrorMessage(error="client_behind", detail=detail))


class LiveStream:
    """State of one WebSocket connection: the protocol side; the feed does the pose work."""

    def __init__(self, ws: WebSocket, settings: Settings, metrics: ServiceMetrics, open_feed: FeedOpener):
        self.ws, self.settings, self.metrics = ws, settings, metrics
        self.stream_id = uuid.uuid4().hex[:12]
        self.feed: LiveFeed = open_feed(self.stream_id, self.error)
        self.ready: ReadyMessage | None = None
        self.ack_window = settings.ack_window
        self.unacked: deque[int] = deque()  # frame ids of results sent and not yet acknowledged
        self.ack_changed = asyncio.Event()
        self.next_id = 0
        self.pending_boxes: dict[int, list[list[float]]] = {}
        self.arrivals: deque[float] = deque(maxlen=int(settings.max_fps) + 1)  # the last second's
        self.waiting = UnansweredFrames()  # frames given to the feed whose answer is not sent yet
        self.bad_messages = 0
        self.frames = 0
        self.dropped = 0
        self.send_lock = asyncio.Lock()

    @property
    def behind_limit(self) -> int:
        """Frames waiting for their answer beyond which new frames are dropped (``client_behind``);
        twice as many close the stream (4008)."""
        lookahead = self.ready.lookahead if self.ready is not None else 0
        return 2 * self.ack_window + lookahead

    async def send(self, message: BaseModel) -> None:
        """Send within ``ack_timeout_s``: the transport buffers little, a client that does not read
        blocks the send, and is closed rather than waited for."""
        with self.metrics.cpu("encode"):
            data = message.model_dump_json()
        async with self.send_lock:
            try:
                async with asyncio.timeout(self.settings.ack_timeout_s):
                    with self.metrics.cpu("send"):  # the transport takes it at once: no await waits
                        await self.ws.send_text(data)
            except TimeoutError:
                raise _client_behind(f"results not read for {self.settings.ack_timeout_s:g} s") from None

    async def error(self, kind: str, detail: str, frame_id: int | None = None) -> None:
        self.bad_messages += 1
        self.metrics.errors.labels(f"ws_{kind}").inc()
        if frame_id is not None:  # a refused frame gets no answer (one whose boxes were refused, later)
            self.waiting.discard(frame_id)
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

    def on_ack(self, ack: AckMessage) -> None:
        while self.unacked and self.unacked[0] <= ack.frame_id:
            self.unacked.popleft()
        self.ack_changed.set()

    async def on_control(self, message: ClientMessage | ValidationError) -> bool:
        """Apply a control message (or report text that is not one); True when the client ended."""
        if isinstance(message, ValidationError):
            first = message.errors(include_url=False, include_input=False)[0]
            said = shown(first["msg"], 200)  # pydantic quotes an unknown type: the client's text
            if first["type"] == "json_invalid":
                await self.error("invalid_json", f"text message is not usable JSON: {said}")
            else:
                where = ".".join(str(p) for p in first["loc"])
                await self.error("invalid_message", f"{where}: {said}")
        elif isinstance(message, ConfigMessage):
            await self.configure(message)
        elif isinstance(message, BoxesMessage):
            frame_id = self.next_id if message.frame_id is None else message.frame_id
            if len(self.pending_boxes) >= MAX_PENDING_BOXES:
                await self.error("invalid_boxes", f"boxes for more than {MAX_PENDING_BOXES} future frames")
            else:
                self.pending_boxes[frame_id] = message.boxes
        elif isinstance(message, AckMessage):
            self.on_ack(message)
        elif isinstance(message, EndMessage):
            return True
        return False

    async def on_frame(self, data: bytes) -> None:
        with self.metrics.cpu("receive"):
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
        behind = len(self.waiting)
        if behind >= 2 * self.behind_limit:
            raise _client_behind(f"{behind} frames wait for their results to be read and acknowledged")
        reason = self._rate_limited()
        if reason is None and behind > self.behind_limit:
            reason = "client_behind: results are not being read or acknowledged"
        self.frames += 1
        self.waiting.add(frame_id)
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
            with self.metrics.cpu("encode"):
                counted = self._counted(reply)
            await self.send(counted)
            self.metrics.observe_stage("send", time.perf_counter() - start)
            self.unacked.append(reply.frame_id)

    async def _wait_for_window(self) -> None:
        deadline = time.monotonic() + self.settings.ack_timeout_s
        while len(self.unacked) >= self.ack_window:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timeout = self.settings.ack_timeout_s
                raise _client_behind(f"no ack for {timeout:g} s with a full window of {self.ack_window}")
            self.ack_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # not wait_for: on 3.11 it may lose a cancel
                    await self.ack_changed.wait()

    def _counted(self, reply: ResultMessage | DroppedMessage) -> BaseModel:
        """Count the reply; a result's latency is measured here, from the frame's arrival on this node."""
        arrived = self.waiting.answer(reply.frame_id)
        if isinstance(reply, ResultMessage):
            self.metrics.frames.labels("live").inc()
            if arrived is None:
                return reply
            return reply.model_copy(update={"latency_ms": (time.monotonic() - arrived) * 1000.0})
        self.dropped += 1
        self.metrics.frames_dropped.labels(reply.reason.split(":")[0]).inc()
        return reply


@router.websocket("/v1/stream", dependencies=[Authorised])
async def stream(ws: WebSocket, node: ReadyNodeDep) -> None:
    """The key and readiness are checked by the HTTP routes' dependencies; their refusals close
    the WebSocket with its protocol's codes (``errors.WEBSOCKET_REFUSALS``)."""
    settings = node.settings
    if len(node.streams) >= settings.max_streams:
        raise ApiError(429, "too_many_streams", f"limit is {settings.max_streams}")
    await ws.accept()
    live = LiveStream(ws, settings, node.metrics, node.open_feed)
    node.streams.add(live.stream_id, live)
    node.metrics.active_streams.inc()
    inbox = _Inbox(2 * settings.max_message_bytes, settings.ws_idle_timeout_s, live.on_ack, node.metrics.cpu)
    reader = asyncio.create_task(inbox.read(ws), name=f"stream-{live.stream_id}-read")
    tasks = (
        reader,
        asyncio.create_task(_handle(live, inbox), name=f"stream-{live.stream_id}-handle"),
        asyncio.create_task(live.deliver(), name=f"stream-{live.stream_id}-send"),
    )
    code, reason = 1000, "stream ended"
    told: ErrorMessage | None = None  # the error sent before the close
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task in done:
                task.result()  # raises _Closing, WebSocketDisconnect, or a fault of ours
        if reader in done:
            code, reason = 0, "client left"
        else:  # the handler (ended before it started) or the sender (delivered every result)
            await live.send(EndedMessage(frames=live.frames, dropped=live.dropped))
    except _Closing as exc:
        code, reason, told = exc.code, exc.reason, exc.error
    except WebSocketDisconnect:
        code, reason = 0, "client left"
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
        await cancel_and_wait(*tasks)
        await live.feed.close()
        if told is not None:
            node.metrics.errors.labels(f"ws_{told.error}").inc()
        if code and ws.application_state != WebSocketState.DISCONNECTED:
            await close_websocket(ws, code, reason, told)
        log.info(
            "stream %s closed: %s%s (%d frames, %d dropped)",
            live.stream_id,
            f"{code} " if code else "",
            told.detail if told is not None else reason,
            live.frames,
            live.dropped,
        )


class _Inbox:
    """Messages read ahead of their handling, so that a client's disconnect is seen at once.

    Handling a frame can take a while (decoding, the detector, a worker's answers); a disconnect
    read only after the frames queued before it would keep the stream's slot for that long, and
    acks read only then would make a client that reads and acknowledges look behind: acks go to
    ``on_ack`` at once instead. Read-ahead stops at ``max_bytes`` of unhandled messages (each
    costing at least ``MESSAGE_COST_BYTES``), so a fast sender is still held back by TCP. A client
    from which no message arrives for ``idle_s`` is closed (4000).
    """

    def __init__(
        self, max_bytes: int, idle_s: float, on_ack: Callable[[AckMessage], None], cpu: CpuSpan = NO_CPU
    ):
        self.max_bytes, self.idle_s, self.on_ack, self.cpu = max_bytes, idle_s, on_ack, cpu
        self.messages: asyncio.Queue[tuple[Inbound, int]] = asyncio.Queue()  # with their cost
        self.size = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read(self, ws: WebSocket) -> None:
        """Read until the client disconnects; raises ``_Closing`` when it stays silent too long."""
        while True:
            await self.room.wait()
            try:
                async with asyncio.timeout(self.idle_s):
                    message = await ws.receive()
            except TimeoutError:
                detail = f"no message for {self.idle_s:g} s"
                raise _Closing(4000, "idle", ErrorMessage(error="idle_timeout", detail=detail)) from None
            if message["type"] == "websocket.disconnect":
                return
            with self.cpu("receive"):
                inbound = _inbound(message)
            if isinstance(inbound, AckMessage):
                self.on_ack(inbound)
                continue
            cost = max(MESSAGE_COST_BYTES, len(message.get("bytes") or b"") + len(message.get("text") or ""))
            self.size += cost
            if self.size > self.max_bytes:
                self.room.clear()
            self.messages.put_nowait((inbound, cost))

    async def get(self) -> Inbound:
        inbound, cost = await self.messages.get()
        self.size -= cost
        if self.size <= self.max_bytes:
            self.room.set()
        return inbound


def _inbound(message: Message) -> Inbound:
    frame: bytes | None = message.get("bytes")
    if frame is not None:
        return frame
    try:  # pydantic's parser caps nesting and number length: no input raises anything else
        return _CLIENT_MESSAGE.validate_json(message.get("text") or "")
    except ValidationError as exc:
        return exc


async def _handle(live: LiveStream, inbox: _Inbox) -> None:
    """Apply the client's messages in order; returns only when the client ended before starting
    (the sender ends the stream otherwise, once every result after ``end`` is delivered)."""
    ended = False
    while True:
        inbound = await inbox.get()
        if isinstance(inbound, bytes):
            if ended:
                await live.error("invalid_message", "frame after end")
            else:
                await live.on_frame(inbound)
        elif await live.on_control(inbound) and not ended:
            ended = True
            if live.ready is None:
                return
            await live.feed.end()
        live.ack_changed.set()  # wakes a sender waiting for the session to exist
