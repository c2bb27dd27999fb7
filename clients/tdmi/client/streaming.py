"""The live-stream engine (asyncio): frames out, typed events in, acks, flow control, reconnection.

One engine serves both clients: ``AsyncPoseClient.stream`` iterates it directly and
``PoseClient.stream`` runs it on a background event loop (``tdmi.client.bridge``).

Per connection: send a ``config``, read ``ready``, then a sender task reads the source, encodes
JPEG and sends frames (``pack_frame`` with the frame id and capture timestamp) while the receive
loop turns answers into events and acknowledges each one. Frame ids run on across reconnections,
so results stay in increasing frame order for the whole iteration. At most ``max_in_flight``
frames wait for an answer (at least ``lookahead + 1``, or the server could never answer the
oldest; at most what the server's ``client_behind`` rule allows).

A connection that drops with 1011/1012/1013, a network failure or a server not ready yet is
reconnected after an exponential backoff; answers of frames in flight at that moment are lost
and reported in ``Reconnecting.lost``. Auth failures, bad configs and protocol errors raise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tdmi.client.errors import AuthError, PoseError, ServerUnreachable, StreamClosed, StreamError
from tdmi.client.events import (
    FrameDropped,
    FrameResult,
    Reconnecting,
    StreamEnded,
    StreamEvent,
    StreamResumed,
    StreamStarted,
    parse_server_message,
)
from tdmi.client.sources import Frame, FrameSource, encode_jpeg
from tdmi.protocol.backoff import BackoffSchedule
from tdmi.protocol.media import require
from tdmi.protocol.stream import (
    CLOSE_CODES,
    AckMessage,
    BoxMode,
    ConfigMessage,
    DroppedMessage,
    EndedMessage,
    EndMessage,
    ErrorMessage,
    ReadyMessage,
    ResultMessage,
    ResumedMessage,
    pack_frame,
)

__all__ = ["StreamOptions", "classify_failure", "stream_events"]

RETRY_CLOSE_CODES = frozenset({1006, 1011, 1012, 1013})  # 1006: closed without a close frame
RETRY_ERRORS = frozenset({"not_ready"})


@dataclass(frozen=True)
class StreamOptions:
    """How to stream: the server-side ``config`` fields, then client-side pacing and recovery."""

    model: str | None = None
    lookahead: int | None = None
    detector: BoxMode = "auto"
    detect_every: int | None = None
    ack_window: int | None = None
    fps: float | None = None  # send at most this many frames per second (None: as the window allows)
    quality: int = 85  # JPEG quality of the frames sent
    max_frames: int | None = None  # stop the source after this many frames
    max_in_flight: int | None = None  # frames sent and not yet answered (None: lookahead + 4)
    keep_images: bool = True  # attach the RGB frame to its FrameResult / FrameDropped
    reconnect_attempts: int = 5  # consecutive failed reconnections before giving up
    backoff_s: float = 0.5  # first reconnection delay, doubled each failed attempt
    backoff_max_s: float = 10.0
    open_timeout_s: float = 10.0

    def overridden(self, **given: Any) -> StreamOptions:
        """These options with each keyword argument that is not None put in their place."""
        return replace(self, **{name: value for name, value in given.items() if value is not None})

    def config(self) -> ConfigMessage:
        return ConfigMessage(
            model=self.model,
            lookahead=self.lookahead,
            detector=self.detector,
            detect_every=self.detect_every,
            ack_window=self.ack_window,
        )

    def in_flight_limit(self, ready: ReadyMessage) -> int:
        wanted = self.max_in_flight if self.max_in_flight is not None else ready.lookahead + 4
        return max(ready.lookahead + 1, min(wanted, 2 * ready.ack_window + ready.lookahead))


class _InFlight:
    """Frames sent and not yet answered, by id; wakes the sender when one is answered."""

    def __init__(self) -> None:
        self.frames: dict[int, Frame] = {}
        self._changed = asyncio.Event()

    def add(self, frame_id: int, frame: Frame) -> None:
        self.frames[frame_id] = frame

    def settle(self, frame_id: int) -> Frame | None:
        """Forget ``frame_id`` and any earlier frame (answers come in order); return its frame."""
        for earlier in [i for i in self.frames if i < frame_id]:
            del self.frames[earlier]
        frame = self.frames.pop(frame_id, None)
        self._changed.set()
        return frame

    def lose_all(self) -> tuple[int, ...]:
        lost = tuple(self.frames)
        self.frames.clear()
        self._changed.set()
        return lost

    async def wait_below(self, limit: int) -> None:
        while len(self.frames) >= limit:
            self._changed.clear()
            await self._changed.wait()


class _Reader:
    """Reads and encodes the source on one thread of its own, a frame ahead of the sender.

    One thread serialises every call into the source (a generator cannot be entered twice), so
    ``close`` runs after a read still under way. A live source's unsent frame is replaced by a
    newer one instead of queueing.
    """

    _END = None

    def __init__(self, source: FrameSource, options: StreamOptions):
        self.source, self.options = source, options
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tdmi-source")
        self._queue: asyncio.Queue[tuple[Frame, bytes] | None] = asyncio.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self.skipped = 0

    def _read(self) -> tuple[Frame, bytes] | None:
        frame = next(self.source, None)
        return None if frame is None else (frame, encode_jpeg(frame.image, self.options.quality))

    async def _run(self) -> None:
        count = itertools.count()
        try:
            while self.options.max_frames is None or next(count) < self.options.max_frames:
                item = await asyncio.wrap_future(self._pool.submit(self._read))
                if item is None:
                    break
                if self.source.live and self._queue.full():
                    self._queue.get_nowait()
                    self.skipped += 1
                await self._queue.put(item)
        except Exception as exc:
            self._error = exc
        await self._queue.put(self._END)

    async def next(self) -> tuple[Frame, bytes] | None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        item = await self._queue.get()
        if item is self._END:
            self._queue.put_nowait(self._END)  # every later call sees the end too
            if self._error is not None:
                raise self._error
        return item

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        closed = self._pool.submit(self.source.close)
        self._pool.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(closed), timeout=10)


async def stream_events(
    url: str, headers: Mapping[str, str], source: FrameSource, options: StreamOptions
) -> AsyncGenerator[StreamEvent, None]:
    """Stream ``source`` to the WebSocket at ``url`` and yield what comes back (see module doc)."""
    require("cv2", "a live stream (frames travel as JPEG)")  # before connecting, not in the reader
    reader = _Reader(source, options)
    in_flight = _InFlight()
    ids = itertools.count()
    backoff = BackoffSchedule(options.backoff_s, options.backoff_max_s)
    connected_once = False
    try:
        while True:
            try:
                async with websockets.connect(
                    url,
                    additional_headers=dict(headers),
                    compression=None,  # JPEG does not compress
                    max_size=None,
                    open_timeout=options.open_timeout_s,
                ) as ws:
                    ready = await _handshake(ws, options)
                    connected_once = True
                    backoff.reset()
                    yield StreamStarted(ready)
                    sender = asyncio.create_task(
                        _send_frames(ws, reader, in_flight, ids, options, options.in_flight_limit(ready))
                    )
                    try:
                        async with contextlib.aclosing(_receive(ws, sender, in_flight, options)) as events:
                            async for event in events:
                                yield event
                                if isinstance(event, StreamEnded):
                                    return
                    finally:
                        sender.cancel()
                        await asyncio.gather(sender, return_exceptions=True)
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError, StreamError) as exc:
                failure = classify_failure(exc, connected_once)
            delay = backoff.next_delay()
            if backoff.failures > options.reconnect_attempts:
                raise failure
            code = failure.code if isinstance(failure, StreamClosed) else None
            yield Reconnecting(backoff.failures, delay, code, str(failure), in_flight.lose_all())
            await asyncio.sleep(delay)
    finally:
        await reader.close()


def classify_failure(exc: Exception, connected_once: bool) -> PoseError:
    """Raise at once what a reconnection cannot fix; return the retryable failure otherwise.

    Before any connection succeeded nothing is retried: a wrong URL fails fast.
    """
    if isinstance(exc, StreamError):
        if exc.kind in RETRY_ERRORS and connected_once:
            return exc
        raise exc
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else "connection lost"
        if code == 1008:
            raise AuthError(401, "unauthorised", reason or CLOSE_CODES[1008]) from None
        closed = StreamClosed(code, reason or CLOSE_CODES.get(code, ""))
        if code in RETRY_CLOSE_CODES and connected_once:
            return closed
        raise closed from None
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            raise AuthError(status, "unauthorised", "the server refused the WebSocket: wrong or missing key")
        if status < 500 or not connected_once:
            raise StreamClosed(None, f"the server refused the WebSocket with HTTP {status}") from None
        return StreamClosed(None, f"HTTP {status}")
    unreachable = ServerUnreachable(f"cannot reach the stream endpoint: {exc or type(exc).__name__}")
    if not connected_once:
        raise unreachable from None
    return unreachable


async def _handshake(ws: ClientConnection, options: StreamOptions) -> ReadyMessage:
    await ws.send(options.config().model_dump_json(exclude_none=True))
    message = parse_server_message(await ws.recv())
    if isinstance(message, ErrorMessage):
        raise StreamError(message.error, message.detail, message.frame_id)
    if not isinstance(message, ReadyMessage):
        raise PoseError(f"expected `ready` from the server, got `{message.type}`")
    return message


async def _send_frames(
    ws: ClientConnection,
    reader: _Reader,
    in_flight: _InFlight,
    ids: itertools.count[int],
    options: StreamOptions,
    limit: int,
) -> None:
    loop = asyncio.get_running_loop()
    next_send = loop.time()
    while True:
        await in_flight.wait_below(limit)
        item = await reader.next()
        if item is None:
            await ws.send(EndMessage().model_dump_json())
            return
        frame, jpeg = item
        if options.fps:
            await asyncio.sleep(max(0.0, next_send - loop.time()))
            next_send = max(next_send + 1.0 / options.fps, loop.time())
        frame_id = next(ids)
        in_flight.add(frame_id, frame)
        await ws.send(pack_frame(jpeg, frame_id, frame.timestamp))


async def _receive(
    ws: ClientConnection, sender: asyncio.Task[None], in_flight: _InFlight, options: StreamOptions
) -> AsyncGenerator[StreamEvent, None]:
    while True:
        receive = asyncio.ensure_future(ws.recv())
        if not sender.done():
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and sender.exception() is not None:
                receive.cancel()
                raise sender.exception()  # type: ignore[misc]  # the source failed, or the send did
        message = parse_server_message(await receive)
        if isinstance(message, ResultMessage | DroppedMessage):
            frame = in_flight.settle(message.frame_id)
            with contextlib.suppress(ConnectionClosed):  # the server may close right after `ended`
                await ws.send(AckMessage(frame_id=message.frame_id).model_dump_json())
            image = frame.image if frame is not None and options.keep_images else None
            if isinstance(message, ResultMessage):
                yield FrameResult(message, image)
            else:
                yield FrameDropped(message, image)
        elif isinstance(message, ResumedMessage):
            yield StreamResumed(message)
        elif isinstance(message, ErrorMessage):
            raise StreamError(message.error, message.detail, message.frame_id)
        elif isinstance(message, EndedMessage):
            yield StreamEnded(message)
            return
