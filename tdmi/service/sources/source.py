"""One camera source: its reader, the live feed it drives, its viewers and its overlay.

Two tasks on the event loop. The pump takes the reader's newest frame (on a thread of the
source's own, so a camera that stalls never holds a thread of the shared pool) and pushes it into
the feed: the same feed, session, batcher and engine as a pushed stream. It keeps at most
``lookahead + AHEAD`` frames unanswered, and at most ``max_fps`` a second; meanwhile the reader
keeps only the newest frame, so a model slower than the camera skips frames (the reader counts
them) instead of falling behind it. The deliverer reads the feed's replies in frame order,
encodes each result once for every viewer, and offers the frame to the overlay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, cast

import numpy as np

from tdmi.protocol.sources import SourceStatus, SourceStatusMessage
from tdmi.protocol.stream import ConfigMessage, DroppedMessage, ReadyMessage, ResultMessage
from tdmi.service.config import Settings
from tdmi.service.errors import public_failure
from tdmi.service.inference.threads import named_threads
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.sources.overlay import LiveOverlay
from tdmi.service.sources.reader import CameraFrame, ReaderState, ReaderStats
from tdmi.service.sources.recording import RecordingWriter
from tdmi.service.sources.url_policy import CheckedUrl
from tdmi.service.sources.viewers import Viewers
from tdmi.service.streaming.feed import FeedReply

__all__ = [
    "FrameReader",
    "NewReader",
    "OpenSourceFeed",
    "Source",
    "SourceFeed",
    "SourceOptions",
    "SourceParts",
    "SourceStats",
]

log = logging.getLogger("tdmi.sources")

AHEAD = 2  # frames pushed beyond the lookahead before the pump waits for an answer
POLL_S = 0.5  # longest wait for a frame before the pump looks whether it should stop
FPS_WINDOW = 32  # results over which the processing rate is measured
FPS_RECENT_S = 5.0  # no result for this long: no processing rate (the camera is away)
STATE_CHANGE = Callable[[ReaderState, str | None], None]


class FrameReader(Protocol):
    """What a source needs of its camera (``tdmi.service.sources.reader.CameraReader``)."""

    def start(self) -> None: ...

    def next_frame(self, after: int, timeout: float) -> CameraFrame | None: ...

    def stats(self) -> ReaderStats: ...

    def stop(self, timeout: float = 5.0) -> None: ...


# (checked URL, settings, state callback) -> the camera's reader, not started
NewReader = Callable[[CheckedUrl, Settings, STATE_CHANGE], FrameReader]


class SourceFeed(Protocol):
    """The live feed a source drives (``tdmi.service.streaming.feed.LocalFeed``)."""

    stream_id: str

    async def open(self, config: ConfigMessage) -> ReadyMessage: ...

    async def push_frame(self, image: np.ndarray, frame_id: int, timestamp: float | None) -> None: ...

    def replies(self) -> AsyncIterator[FeedReply]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SourceOptions:
    """What was asked for a source, without the URL's credentials."""

    owner: str | None  # the API key's hash, as jobs have it
    url: str  # redacted
    model: str | None
    lookahead: int | None
    max_fps: float | None


@dataclass(frozen=True)
class SourceStats:
    """A source's state as ``GET /v1/sources/{id}`` shows it."""

    status: SourceStatus
    reader: ReaderStats
    frames_processed: int
    frames_dropped: int  # by the engine (stale), counted among the skipped
    processing_fps: float | None
    viewers: int


class Source:
    """A camera pulled by the server, fed through the live engine to any number of viewers."""

    def __init__(
        self,
        source_id: str,
        options: SourceOptions,
        url: CheckedUrl,
        *,
        new_reader: NewReader,
        feed: SourceFeed,
        settings: Settings,
        metrics: ServiceMetrics,
        on_state: Callable[[], None] = lambda: None,
        recorder: RecordingWriter | None = None,
        first_frame_id: int = 1,
    ):
        self.source_id, self.options, self.metrics = source_id, options, metrics
        self.recorder = recorder  # record: true
        self.frame_base = first_frame_id - 1  # the reader's frames count from 1
        self.on_state = on_state  # on the loop, after each change of the reader's state
        self.created_at = datetime.now(UTC)
        self.feed = feed
        self.viewers = Viewers(metrics.source_viewer_dropped.inc)
        self.reader = new_reader(url, settings, self._state_changed)
        self.overlay: LiveOverlay | None = None
        self.interval_s = 0.0  # between frames pushed: 1 / max_fps
        self.failure: str | None = None  # a fault of ours that ended a task, with its log reference
        self.ready: ReadyMessage | None = None
        self.processed = 0
        self.dropped = 0
        self._loop = asyncio.get_running_loop()
        self._images: dict[int, np.ndarray] = {}  # frames pushed and not yet answered
        self._answered = asyncio.Event()
        self._answer_times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._counted_read = self._counted_skipped = 0
        self._thread = named_threads("tdmi-source-take")  # waits for the reader's frames
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    async def start(self, skeleton: list[tuple[int, int]], settings: Settings) -> ReadyMessage:
        """Open the feed (raises ``FeedConfigError``), then start reading the camera."""
        self.ready = await self.feed.open(
            ConfigMessage(model=self.options.model, lookahead=self.options.lookahead)
        )
        max_fps = min(self.options.max_fps or settings.max_fps, settings.max_fps)
        self.interval_s = 1.0 / max_fps
        self.overlay = LiveOverlay(skeleton, settings.overlay_score_threshold, max_fps)
        self.reader.start()
        if self.recorder is not None:
            self.recorder.start()
        self._tasks = [
            asyncio.create_task(self._guarded(self._pump(), "pump"), name=f"source-{self.source_id}-pump"),
            asyncio.create_task(
                self._guarded(self._deliver(), "delivery"), name=f"source-{self.source_id}-send"
            ),
        ]
        return self.ready

    def status(self) -> SourceStatus:
        return "stopped" if self._stopped else _status(self.reader.stats().state)

    def stats(self) -> SourceStats:
        frames_per_second = None
        times = self._answer_times
        recent = bool(times) and time.monotonic() - times[-1] < FPS_RECENT_S
        if recent and len(times) >= 2 and times[-1] > times[0]:
            frames_per_second = (len(times) - 1) / (times[-1] - times[0])
        return SourceStats(
            status=self.status(),
            reader=self.reader.stats(),
            frames_processed=self.processed,
            frames_dropped=self.dropped,
            processing_fps=frames_per_second,
            viewers=len(self.viewers),
        )

    def status_message(self) -> str:
        """The source's state now as a viewer's ``status`` event, encoded (with why, when it is
        not getting frames)."""
        status = self.status()
        detail = self.reader.stats().last_error if status in ("reconnecting", "failed") else None
        return SourceStatusMessage(source_id=self.source_id, status=status, detail=detail).model_dump_json()

    async def stop(self) -> None:
        """Stop reading, cancel the feed's work, end every viewer; joins the reader's threads."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.feed.close()
        await asyncio.to_thread(self.reader.stop)
        await asyncio.to_thread(self._thread.shutdown, wait=True)
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.stop)
        self._count_reader_frames()
        self._images.clear()
        self.viewers.publish(self.status_message(), droppable=False)
        self.viewers.close_all()
        if self.overlay is not None:
            await self.overlay.close()

    def _state_changed(self, state: ReaderState, detail: str | None) -> None:
        """From the reader's thread: tell the viewers on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is watching
            self._loop.call_soon_threadsafe(self._publish_state, state, detail)

    def _publish_state(self, state: ReaderState, detail: str | None) -> None:
        if not self._stopped:
            message = SourceStatusMessage(source_id=self.source_id, status=_status(state), detail=detail)
            self.viewers.publish(message.model_dump_json(), droppable=False)
            self.on_state()

    async def _guarded(self, work: Coroutine[None, None, None], what: str) -> None:
        """Run one of the source's tasks; a fault of ours is logged with a reference, not raised."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = public_failure(exc, f"source {self.source_id} {what}")

    async def _pump(self) -> None:
        assert self.ready is not None
        ahead = self.ready.lookahead + AHEAD
        after, next_at = 0, 0.0
        while True:
            while len(self._images) > ahead:
                self._answered.clear()
                await self._answered.wait()
            wait_s = next_at - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            frame = await self._loop.run_in_executor(self._thread, self.reader.next_frame, after, POLL_S)
            self._count_reader_frames()
            if frame is None:
                continue
            after, frame_id = frame.seq, self.frame_base + frame.seq
            next_at = time.monotonic() + self.interval_s
            self._images[frame_id] = frame.image
            await self.feed.push_frame(frame.image, frame_id, frame.captured_at)

    async def _deliver(self) -> None:
        async for reply in self.feed.replies():
            if not isinstance(reply, ResultMessage | DroppedMessage):  # resumed: a cluster's only
                continue
            image = self._images.pop(reply.frame_id, None)
            self._answered.set()
            if isinstance(reply, ResultMessage):
                self.processed += 1
                self._answer_times.append(time.monotonic())
                self.metrics.source_frames.labels("processed").inc()
                encoded = reply.model_dump_json()
                self.viewers.publish(encoded)
                if self.recorder is not None:
                    self.recorder.append(reply, encoded, None if image is None else image.shape[:2])
                if image is not None and self.overlay is not None:
                    self.overlay.offer(image, reply.persons)
            elif isinstance(reply, DroppedMessage):
                self.dropped += 1
                self.metrics.source_frames.labels("skipped").inc()

    def _count_reader_frames(self) -> None:
        """Bring the counters of /metrics up to the reader's."""
        stats = self.reader.stats()
        self.metrics.source_frames.labels("read").inc(stats.frames_read - self._counted_read)
        self.metrics.source_frames.labels("skipped").inc(stats.frames_skipped - self._counted_skipped)
        self._counted_read, self._counted_skipped = stats.frames_read, stats.frames_skipped


def _status(state: ReaderState) -> SourceStatus:
    """The reader's state as the wire names it (the same words)."""
    return cast(SourceStatus, state.value)


OpenSourceFeed = Callable[[str], SourceFeed]  # source id -> the live feed it drives


@dataclass(frozen=True)
class SourceParts:
    """What every camera source of a node is built from: the node's settings, metrics, feeds and
    readers; ``build`` adds one source's own parts."""

    settings: Settings
    metrics: ServiceMetrics
    open_feed: OpenSourceFeed
    new_reader: NewReader

    def build(
        self,
        source_id: str,
        options: SourceOptions,
        url: CheckedUrl,
        *,
        on_state: Callable[[], None] = lambda: None,
        recorder: RecordingWriter | None = None,
        first_frame_id: int = 1,
    ) -> Source:
        return Source(
            source_id,
            options,
            url,
            new_reader=self.new_reader,
            feed=self.open_feed(source_id),
            settings=self.settings,
            metrics=self.metrics,
            on_state=on_state,
            recorder=recorder,
            first_frame_id=first_frame_id,
        )

    def count_states(self, sources: Iterable[Source]) -> None:
        """``tdmi_sources`` by state: the node's sources as they are now."""
        states: list[str] = [s.status() for s in sources]
        for state in ReaderState:
            self.metrics.sources.labels(state.value).set(states.count(state.value))
