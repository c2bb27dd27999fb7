"""``WS /v1/stream``: live feeds. The protocol is documented in docs/websocket.md.

Two tasks per connection: the receiver decodes frames into the session (and reads control
messages), the sender delivers results in frame order within the client's ack window. The
transport's ping/pong (uvicorn ``ws_ping_interval``) detects dead peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocketState

from protocol.stream import (
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
    unpack_frame,
)
from service.auth import is_authorised
from service.config import Settings
from service.detection import parse_client_boxes
from service.images import decode_image
from service.inference.runtime import InferenceRuntime, UnknownModelError
from service.media import MediaError
from service.metrics import ServiceMetrics
from service.streaming.boxes import detections_array
from service.streaming.factory import SessionFactory
from service.streaming.session import FrameOutcome, StreamFrame, StreamSession

__all__ = ["router"]

router = APIRouter()
log = logging.getLogger("tdmi.stream")
_CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
MAX_BAD_MESSAGES = 20
MAX_PENDING_BOXES = 64


class _Closing(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class LiveStream:
    """State of one WebSocket connection."""

    def __init__(self, ws: WebSocket, settings: Settings, runtime: InferenceRuntime, sessions: SessionFactory,
                 metrics: ServiceMetrics):  # fmt: skip
        self.ws, self.settings, self.runtime, self.sessions, self.metrics = (
            ws,
            settings,
            runtime,
            sessions,
            metrics,
        )
        self.stream_id = uuid.uuid4().hex[:12]
        self.session: StreamSession | None = None
        self.ack_window = settings.ack_window
        self.unacked: deque[int] = deque()  # frame ids of results sent and not yet acknowledged
        self.sent = 0
        self.ack_changed = asyncio.Event()
        self.next_id = 0
        self.pending_boxes: dict[int, list[list[float]]] = {}
        self.arrivals: deque[float] = deque()
        self.bad_messages = 0
        self.frames = 0
        self.dropped = 0
        self.send_lock = asyncio.Lock()

    async def send(self, message: object) -> None:
        data = message.model_dump_json()  # type: ignore[attr-defined]
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
        if self.session is not None:
            await self.error("invalid_message", "config must come before the first frame and only once")
            return
        try:
            model = self.runtime.get(config.model)
            self.session = self.sessions.new(
                self.stream_id,
                model,
                live=True,
                lookahead=config.lookahead,
                box_mode=config.detector,
                detect_every=config.detect_every,
            )
        except (UnknownModelError, ValueError) as exc:
            await self.error("invalid_config", str(exc))
            return
        self.ack_window = config.ack_window or self.settings.ack_window
        await self.send(
            ReadyMessage(
                stream_id=self.stream_id,
                model=model.name,
                lookahead=self.session.options.lookahead,
                ack_window=self.ack_window,
                joints=list(model.preset.layout.joints),
            )
        )

    async def on_text(self, text: str) -> bool:
        """Handle a control message; True when the client ended the stream."""
        try:
            message = _CLIENT_MESSAGE.validate_python(json.loads(text))
        except json.JSONDecodeError as exc:
            await self.error("invalid_json", f"text message is not JSON: {exc.msg} at {exc.pos}")
            return False
        except ValidationError as exc:
            first = exc.errors()[0]
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
        if self.session is None:
            if self.settings.require_config:
                await self.error("config_required", "send a config message before the first frame", frame_id)
                return
            await self.configure(ConfigMessage())
            if self.session is None:
                return
        reason = self._rate_limited()
        start = time.perf_counter()
        try:
            image = await asyncio.get_running_loop().run_in_executor(
                None, lambda: decode_image(image_bytes, max_pixels=self.settings.max_frame_pixels)
            )
            self.metrics.observe_stage("decode", time.perf_counter() - start)
        except MediaError as exc:
            await self.error(exc.kind, f"frame {frame_id}: {exc}", frame_id)
            return
        boxes = None
        raw_boxes = self.pending_boxes.pop(frame_id, None)
        if raw_boxes is not None:
            try:
                boxes = detections_array(parse_client_boxes(raw_boxes, (image.shape[1], image.shape[0])))
            except ValueError as exc:
                await self.error("invalid_boxes", f"frame {frame_id}: {exc}", frame_id)
        if reason is None and self.frames - self.sent > 2 * self.ack_window + self.session.options.lookahead:
            reason = "client_behind: results are not being read or acknowledged"
        self.frames += 1
        frame = StreamFrame(frame_id, image, timestamp=timestamp, client_boxes=boxes, skip_reason=reason)
        await self.session.push(frame)

    def _rate_limited(self) -> str | None:
        now = time.monotonic()
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] < now - 1.0:
            self.arrivals.popleft()
        if len(self.arrivals) > self.settings.max_fps:
            return f"rate: more than {self.settings.max_fps:g} frames per second"
        return None

    async def deliver(self) -> None:
        """Send every outcome in order, never more than ``ack_window`` unacknowledged results."""
        while self.session is None:
            await self.ack_changed.wait()
            self.ack_changed.clear()
        async for outcome in self.session.outcomes():
            await self._wait_for_window()
            start = time.perf_counter()
            await self.send(self._message(outcome))
            self.metrics.observe_stage("send", time.perf_counter() - start)
            self.sent += 1
            self.unacked.append(outcome.frame.frame_id)

    async def _wait_for_window(self) -> None:
        deadline = time.monotonic() + self.settings.ack_timeout_s
        while len(self.unacked) >= self.ack_window:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Closing(4008, f"no ack for {self.settings.ack_timeout_s:g} s with a full window")
            self.ack_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ack_changed.wait(), timeout=remaining)

    def _message(self, outcome: FrameOutcome) -> object:
        frame = outcome.frame
        if outcome.poses is not None:
            self.metrics.frames.labels("live").inc()
            latency = (time.monotonic() - frame.arrived) * 1000.0
            return ResultMessage(
                frame_id=frame.frame_id,
                timestamp=frame.timestamp,
                persons=outcome.poses.persons,
                latency_ms=latency,
            )
        self.dropped += 1
        reason = outcome.dropped or outcome.error or "unknown"
        self.metrics.frames_dropped.labels(reason.split(":")[0]).inc()
        return DroppedMessage(frame_id=frame.frame_id, reason=reason)


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    app = ws.app
    settings: Settings = app.state.settings
    await ws.accept()
    if not is_authorised(settings, ws.headers, ws.query_params.get("api_key")):
        await ws.close(1008, "missing or wrong API key")
        return
    if app.state.not_ready_reason is not None or not app.state.accepting:
        await ws.send_text(
            ErrorMessage(
                error="not_ready", detail=app.state.not_ready_reason or "shutting down"
            ).model_dump_json()
        )
        await ws.close(1013, "not ready")
        return
    if len(app.state.streams) >= settings.max_streams:
        await ws.send_text(
            ErrorMessage(
                error="too_many_streams", detail=f"limit is {settings.max_streams}"
            ).model_dump_json()
        )
        await ws.close(4029, "too many concurrent streams")
        return
    live = LiveStream(ws, settings, app.state.runtime, app.state.sessions, app.state.metrics)
    app.state.streams[live.stream_id] = live
    app.state.metrics.active_streams.inc()
    sender = asyncio.create_task(live.deliver())
    code, reason = 1000, "stream ended"
    try:
        await _receive(live, sender)
        await live.send(EndedMessage(frames=live.frames, dropped=live.dropped))
    except _Closing as exc:
        code, reason = exc.code, exc.reason
    except WebSocketDisconnect:
        code = 0
    except asyncio.CancelledError:
        code, reason = 1012, "server shutting down"
        raise
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        if live.session is not None:
            for runtime in app.state.runtime.models.values():
                await runtime.engine.batcher.cancel_stream(live.stream_id, "stream closed")
        app.state.streams.pop(live.stream_id, None)
        app.state.metrics.active_streams.dec()
        if code and ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError):
                await ws.close(code, reason)


async def _receive(live: LiveStream, sender: asyncio.Task[None]) -> None:
    """Read messages until every result after ``end`` is delivered; acks keep coming meanwhile.

    A failed sender (a client that does not read or ack) closes the connection.
    """
    ended = False
    while True:
        receive = asyncio.ensure_future(live.ws.receive())
        done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            receive.cancel()
            sender.result()  # raises _Closing
            return
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            if ended:
                await live.error("invalid_message", "frame after end")
            else:
                await live.on_frame(message["bytes"])
        elif message.get("text") is not None and await live.on_text(message["text"]) and not ended:
            ended = True
            if live.session is None:
                receive.cancel()
                return
            await live.session.end()  # the sender finishes once the last result is acknowledged
        live.ack_changed.set()  # wakes a sender waiting for the session to exist
