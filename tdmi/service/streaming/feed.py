"""Live feeds: where a WebSocket's frames go and its replies come from.

``LocalFeed`` serves the feed in this process (embedded mode, and inside a scale-out worker);
``tdmi.service.cluster.remote_feed.RemoteFeed`` forwards it to a worker over Redis. The WebSocket
handler speaks the protocol (acks, rates, errors) and does not know which one it has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import numpy as np

from tdmi.protocol.stream import ConfigMessage, DroppedMessage, ReadyMessage, ResultMessage, ResumedMessage
from tdmi.service.config import Settings
from tdmi.service.detection import parse_client_boxes
from tdmi.service.images import decode_image
from tdmi.service.inference.runtime import InferenceRuntime, ModelRuntime, UnknownModelError
from tdmi.service.media import MediaError
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.boxes import detections_array
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.session import FrameOutcome, StreamFrame, StreamSession

__all__ = ["ErrorSink", "FeedConfigError", "FeedReply", "LiveFeed", "LocalFeed", "errors_ignored"]

# (error kind, detail, frame id): a bad frame or bad boxes, told to the client, the stream goes on
ErrorSink = Callable[[str, str, int | None], Awaitable[None]]
FeedReply = ResultMessage | DroppedMessage | ResumedMessage


async def errors_ignored(kind: str, detail: str, frame_id: int | None) -> None:
    """The error sink of a closed feed. Its stream's sink, a method of the stream that holds the
    feed, made a reference cycle that kept every ended stream (socket buffers, frames) until the
    garbage collector's rare full pass."""


class FeedConfigError(ValueError):
    """The stream's config cannot be served (unknown model, lookahead out of range, no worker)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class LiveFeed(Protocol):
    stream_id: str

    async def open(self, config: ConfigMessage) -> ReadyMessage:
        """Start the stream; raises ``FeedConfigError``."""
        ...

    async def push(
        self,
        data: bytes,
        frame_id: int,
        timestamp: float | None,
        boxes: list[list[float]] | None,
        skip_reason: str | None,
    ) -> None:
        """One encoded frame (as the client sent it); ``skip_reason`` answers it with ``dropped``."""
        ...

    async def end(self) -> None:
        """No more frames: the pending ones are answered, then ``replies()`` ends."""
        ...

    def replies(self) -> AsyncIterator[FeedReply]:
        """One reply per pushed frame, in frame order (plus ``resumed`` notices)."""
        ...

    async def close(self) -> None:
        """Forget the stream (its queued work is cancelled); errors are told to nobody after this."""
        ...


class LocalFeed:
    def __init__(
        self,
        stream_id: str,
        on_error: ErrorSink,
        *,
        runtime: InferenceRuntime,
        sessions: SessionFactory,
        settings: Settings,
        metrics: ServiceMetrics,
    ):
        self.stream_id = stream_id
        self.runtime = runtime
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self.on_error = on_error
        self.model: ModelRuntime | None = None
        self.session: StreamSession | None = None
        self._opened = asyncio.Event()

    async def open(self, config: ConfigMessage) -> ReadyMessage:
        try:
            model = self.model = self.runtime.get(config.model)
            self.session = self.sessions.new(
                self.stream_id,
                model,
                live=True,
                lookahead=config.lookahead,
                box_mode=config.detector,
                detect_every=config.detect_every,
                smoothing=config.smoothing,
                smoothing_min_cutoff=config.smoothing_min_cutoff,
                smoothing_beta=config.smoothing_beta,
            )
        except (UnknownModelError, ValueError) as exc:
            raise FeedConfigError("invalid_config", str(exc)) from None
        self._opened.set()
        return ReadyMessage(
            stream_id=self.stream_id,
            model=model.name,
            lookahead=self.session.options.lookahead,
            ack_window=config.ack_window or self.settings.ack_window,
            joints=list(model.preset.layout.joints),
        )

    async def push(
        self,
        data: bytes,
        frame_id: int,
        timestamp: float | None,
        boxes: list[list[float]] | None,
        skip_reason: str | None,
    ) -> None:
        assert self.session is not None, "open() first"
        start = time.perf_counter()
        try:
            image = await asyncio.get_running_loop().run_in_executor(None, self._decode, data)
            self.metrics.observe_stage("decode", time.perf_counter() - start)
        except MediaError as exc:
            await self.on_error(exc.kind, f"frame {frame_id}: {exc}", frame_id)
            return
        client_boxes = None
        if boxes is not None:
            try:
                with self.metrics.cpu("receive"):
                    shape = (image.shape[1], image.shape[0])
                    client_boxes = detections_array(parse_client_boxes(boxes, shape))
            except ValueError as exc:
                await self.on_error("invalid_boxes", f"frame {frame_id}: {exc}", frame_id)
        frame = StreamFrame(
            frame_id, image, timestamp=timestamp, client_boxes=client_boxes, skip_reason=skip_reason
        )
        await self.session.push(frame)

    def _decode(self, data: bytes) -> np.ndarray:
        """On the default pool's thread, which counts its CPU time as the decode stage's."""
        with self.metrics.cpu("decode"):
            return decode_image(data, max_pixels=self.settings.max_frame_pixels)

    async def push_frame(self, image: np.ndarray, frame_id: int, timestamp: float | None) -> None:
        """A frame decoded already (a camera source's, ``tdmi.service.sources``): no JPEG between."""
        assert self.session is not None, "open() first"
        await self.session.push(StreamFrame(frame_id, image, timestamp=timestamp))

    async def end(self) -> None:
        if self.session is not None:
            await self.session.end()

    async def replies(self) -> AsyncIterator[FeedReply]:
        await self._opened.wait()
        assert self.session is not None
        async for outcome in self.session.outcomes():
            with self.metrics.cpu("encode"):
                reply = _reply(outcome)
            yield reply

    async def close(self) -> None:
        self.on_error = errors_ignored
        if self.session is not None:  # first: its frames go even if the wait below is cut short
            self.session.close()
        if self.model is not None:
            await self.model.engine.cancel_stream(self.stream_id, "stream closed")


def _reply(outcome: FrameOutcome) -> FeedReply:
    frame = outcome.frame
    if outcome.poses is not None:
        return ResultMessage(
            frame_id=frame.frame_id,
            timestamp=frame.timestamp,
            persons=outcome.poses.persons,
            latency_ms=(time.monotonic() - frame.arrived) * 1000.0,
        )
    return DroppedMessage(frame_id=frame.frame_id, reason=outcome.dropped or outcome.error or "unknown")
