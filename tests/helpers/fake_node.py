"""A serving node without models, for testing the HTTP and WebSocket layer in-process.

``FakeNode`` implements ``ServingNode`` as ``EmbeddedNode`` does, with the real parts that cost
nothing (readiness, metrics, the live connections, the ``JobService`` over the real SQLite
queue in the node's data directory) and two stand-ins for the models:

- a job runner that answers each job with fake poses (one per box the client gave for a frame,
  else one in the middle of every frame), runs only once the test lets it (``run_jobs``), and
  "renders" the overlay by copying the upload;
- a live feed that decodes each frame (the real decoder, so bad images get their real errors) and
  answers it at once, in order, with the same fake poses; a frame the handler skips is ``dropped``;
- camera sources (the real ``SourceService``, URL policy included) whose cameras are
  ``FakeCamera``: numbered grey frames, live at once.

Its poses are deterministic (``fake_person``): tests can compute what to expect. Readiness is the
test's: ``node.readiness.set("why")`` makes the node not ready, ``set(None)`` ready again.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping

import numpy as np

from tdmi.model.presets import get_preset
from tdmi.protocol import (
    FramePoses,
    JobResultPublic,
    PersonPose,
    VideoPublic,
    WorkerModelPublic,
    WorkerPublic,
    WorkersPublic,
)
from tdmi.protocol.stream import ConfigMessage, DroppedMessage, ReadyMessage, ResultMessage
from tdmi.service.config import Settings
from tdmi.service.detection import parse_client_boxes
from tdmi.service.images import decode_image
from tdmi.service.inference.runtime import ModelInfo, UnknownModelError
from tdmi.service.jobs.queue import JobQueue
from tdmi.service.jobs.runner import job_ended
from tdmi.service.jobs.service import JobService
from tdmi.service.jobs.sqlite import SqliteJobQueue
from tdmi.service.jobs.store import JobRecord, write_json_atomic
from tdmi.service.loops import Loops
from tdmi.service.media import MediaError
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.nodes.node import LiveConnections, Readiness
from tdmi.service.sources.reader import CameraFrame, ReaderState, ReaderStats
from tdmi.service.sources.registry import SourceService
from tdmi.service.sources.url_policy import CheckedUrl
from tdmi.service.streaming.feed import ErrorSink, FeedConfigError, FeedReply, errors_ignored
from tdmi.service.video import probe_video

__all__ = [
    "FAKE_CAMERA_FPS",
    "FAKE_CAMERA_SIZE",
    "FakeCamera",
    "FakeCatalog",
    "FakeFeed",
    "FakeNode",
    "fake_person",
]

Box = list[float]
FAKE_CAMERA_FPS = 25.0
FAKE_CAMERA_SIZE = (120, 160)  # height, width


def fake_person(track_id: int, box: Box, joints: int) -> PersonPose:
    """A pose whose joints lie evenly on the box's diagonal, each with score 0.5."""
    x1, y1, x2, y2 = box[:4]
    steps = [(j + 1) / (joints + 1) for j in range(joints)]
    keypoints = [(x1 + (x2 - x1) * s, y1 + (y2 - y1) * s, 0.5) for s in steps]
    return PersonPose(track_id=track_id, box=(x1, y1, x2, y2), box_score=1.0, keypoints=keypoints)


def _persons(boxes: list[Box] | None, width: int, height: int, joints: int) -> list[PersonPose]:
    """One pose per given box; without boxes, the fake detector's one person in the middle."""
    if boxes is None:
        boxes = [[width / 4, height / 4, width * 3 / 4, height * 3 / 4]]
    return [fake_person(i, box, joints) for i, box in enumerate(boxes)]


class FakeCatalog:
    """The models a fake node serves: presets, without networks or checkpoints."""

    def __init__(self, names: tuple[str, ...]):
        self.models: dict[str, ModelInfo] = {name: ModelInfo(get_preset(name), None) for name in names}

    def get(self, name: str | None) -> ModelInfo:
        name = name or next(iter(self.models))
        if name not in self.models:
            raise UnknownModelError(f"model {name!r} is not loaded; loaded: {', '.join(self.models)}")
        return self.models[name]


class FakeFeed:
    """A live feed answered at once with fake poses, in the order its frames came."""

    def __init__(self, stream_id: str, on_error: ErrorSink, catalog: FakeCatalog, settings: Settings):
        self.stream_id, self.on_error, self.catalog, self.settings = stream_id, on_error, catalog, settings
        self._replies: asyncio.Queue[FeedReply | None] = asyncio.Queue()
        self._joints = 0
        self._client_boxes_only = False

    async def open(self, config: ConfigMessage) -> ReadyMessage:
        try:
            model = self.catalog.get(config.model)
        except UnknownModelError as exc:
            raise FeedConfigError("invalid_config", str(exc)) from None
        radius = model.preset.num_frames // 2
        lookahead = radius if config.lookahead is None else config.lookahead
        if lookahead > radius:
            raise FeedConfigError("invalid_config", f"lookahead must be 0..{radius}, got {lookahead}")
        self._joints = len(model.preset.layout.joints)
        self._client_boxes_only = config.detector == "client"
        return ReadyMessage(
            stream_id=self.stream_id,
            model=model.name,
            lookahead=lookahead,
            ack_window=config.ack_window or self.settings.ack_window,
            joints=list(model.preset.layout.joints),
        )

    async def push(
        self,
        data: bytes,
        frame_id: int,
        timestamp: float | None,
        boxes: list[Box] | None,
        skip_reason: str | None,
    ) -> None:
        try:
            image = decode_image(data, max_pixels=self.settings.max_frame_pixels)
        except MediaError as exc:
            await self.on_error(exc.kind, f"frame {frame_id}: {exc}", frame_id)
            return
        height, width = image.shape[:2]
        if boxes is not None:
            try:
                boxes = parse_client_boxes(boxes, (width, height)).xyxy.tolist()
            except ValueError as exc:
                await self.on_error("invalid_boxes", f"frame {frame_id}: {exc}", frame_id)
                boxes = []
        elif self._client_boxes_only:
            boxes = []
        if skip_reason is not None:
            self._replies.put_nowait(DroppedMessage(frame_id=frame_id, reason=skip_reason))
            return
        self._answer(frame_id, timestamp, _persons(boxes, width, height, self._joints))

    async def push_frame(self, image: np.ndarray, frame_id: int, timestamp: float | None) -> None:
        """A camera source's frame: the fake detector's one person."""
        height, width = image.shape[:2]
        self._answer(frame_id, timestamp, _persons(None, width, height, self._joints))

    def _answer(self, frame_id: int, timestamp: float | None, persons: list[PersonPose]) -> None:
        result = ResultMessage(frame_id=frame_id, timestamp=timestamp, persons=persons, latency_ms=0.0)
        self._replies.put_nowait(result)

    async def end(self) -> None:
        self._replies.put_nowait(None)

    async def replies(self) -> AsyncIterator[FeedReply]:
        while (reply := await self._replies.get()) is not None:
            yield reply

    async def close(self) -> None:
        self.on_error = errors_ignored


class FakeCamera:
    """A camera for the sources of a fake node: frames of ``FAKE_CAMERA_SIZE`` at
    ``FAKE_CAMERA_FPS`` whose pixels are their sequence number, live from the first one. No
    thread and no socket: a frame is made when the source asks for it."""

    def __init__(
        self, url: CheckedUrl, settings: Settings, on_state: Callable[[ReaderState, str | None], None]
    ):
        self._on_state = on_state
        self._stopped = threading.Event()
        self._seq = 0
        self._state = ReaderState.CONNECTING
        self._live_since: float | None = None

    def start(self) -> None:
        """Nothing to connect to."""

    def next_frame(self, after: int, timeout: float) -> CameraFrame | None:
        if self._stopped.wait(min(timeout, 1 / FAKE_CAMERA_FPS)):
            return None
        self._seq += 1
        if self._state is ReaderState.CONNECTING:
            self._state, self._live_since = ReaderState.LIVE, time.time()
            self._on_state(ReaderState.LIVE, None)
        image = np.full((*FAKE_CAMERA_SIZE, 3), self._seq % 256, dtype=np.uint8)
        return CameraFrame(seq=self._seq, image=image, captured_at=time.time(), pts_s=None)

    def stats(self) -> ReaderStats:
        live = self._live_since is not None
        return ReaderStats(
            state=self._state,
            frames_read=self._seq,
            frames_skipped=0,
            camera_fps=FAKE_CAMERA_FPS if live else None,
            width=FAKE_CAMERA_SIZE[1] if live else None,
            height=FAKE_CAMERA_SIZE[0] if live else None,
            live_since=self._live_since,
            reconnects=0,
            last_error=None,
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._state = ReaderState.STOPPED


class _FakeRunner:
    """Takes the queue's jobs one at a time and finishes each with fake poses."""

    def __init__(self, queue: JobQueue, catalog: FakeCatalog, keep_uploads: bool):
        self.queue, self.catalog, self.keep_uploads = queue, catalog, keep_uploads

    async def take_next(self) -> None:
        claim = await self.queue.take()
        if claim is None:
            return
        if await self.queue.start(claim, "fake") is None:  # cancelled or deleted meanwhile
            await self.queue.release(claim)
            return
        record = await self.queue.get(claim.job_id)
        assert record is not None and record.input_path is not None
        data_dir = self.queue.data_dir
        result = await asyncio.to_thread(self._result, record)
        await self.queue.progress(claim, len(result.frames), len(result.frames))
        write_json_atomic(data_dir / claim.result_name(), result.model_dump(mode="json"))
        rendered = bool(record.options.get("render"))
        if rendered:
            shutil.copyfile(record.input_path, data_dir / claim.video_name())
        await self.queue.finish(claim, video=rendered)
        await job_ended(self.queue, claim.job_id, self.keep_uploads)

    def _result(self, record: JobRecord) -> JobResultPublic:
        assert record.input_path is not None
        info = probe_video(record.input_path)
        model = self.catalog.get(record.model)
        given: dict[str, list[Box]] = record.options.get("boxes") or {}
        joints = len(model.preset.layout.joints)
        frames = [
            FramePoses(
                index=i,
                pts=float(i / info.fps),
                persons=_persons(given.get(str(i), []) if given else None, info.width, info.height, joints),
            )
            for i in range(info.num_frames)
        ]
        video = VideoPublic(width=info.width, height=info.height, fps=float(info.fps), frames=len(frames))
        return JobResultPublic(
            job_id=record.id, model=model.name, video=video, skeleton=model.skeleton(), frames=frames
        )


class FakeNode:
    """``ServingNode`` without models. Jobs wait in the queue until ``run_jobs`` (with
    ``jobs_run=True``, from the start)."""

    def __init__(self, settings: Settings, models: tuple[str, ...] = ("tdmi-tiny",), jobs_run: bool = True):
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.readiness = Readiness("starting")
        self.streams = LiveConnections()
        self.catalog = FakeCatalog(models)
        self.started_at = time.time()
        self._jobs_run = jobs_run
        self._jobs: JobService | None = None
        self._loops: Loops | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        # None: a node without sources, as a cluster's API node is for now
        self.sources: SourceService | None = SourceService(
            settings, self.metrics, self.catalog, self._source_feed, FakeCamera
        )

    async def start(self) -> None:
        queue = SqliteJobQueue(self.settings.data_dir)
        self._jobs = JobService(queue, self.settings, self.metrics, self.catalog)
        self._loops = Loops(self.readiness.loop_trouble, self.settings.loop_stall_s)
        await self._jobs.start(self._loops)
        if self.sources is not None:
            self.sources.start(self._loops)
        self._loop = asyncio.get_running_loop()
        if self._jobs_run:
            self._start_runner()
        self.readiness.set(None)

    def run_jobs(self) -> None:
        """Let the jobs run (from any thread: tests drive the app from another one)."""
        assert self._loop is not None, "the node has not started"
        self._loop.call_soon_threadsafe(self._start_runner)

    def _start_runner(self) -> None:
        if self._runner is None and self._loops is not None:
            runner = _FakeRunner(self.jobs.queue, self.catalog, self.settings.keep_uploads)
            self._runner = self._loops.start("fake job runner", runner.take_next)

    async def stop(self) -> None:
        await self.streams.close_all()
        if self.sources is not None:
            await self.sources.stop()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._jobs is not None:
            await self._jobs.stop()

    @property
    def jobs(self) -> JobService:
        if self._jobs is None:
            raise RuntimeError("the job system has not started")
        return self._jobs

    def open_feed(self, stream_id: str, on_error: ErrorSink) -> FakeFeed:
        return FakeFeed(stream_id, on_error, self.catalog, self.settings)

    def _source_feed(self, source_id: str) -> FakeFeed:
        return FakeFeed(source_id, errors_ignored, self.catalog, self.settings)

    async def workers(self) -> WorkersPublic:
        models = [
            WorkerModelPublic(name=name, checkpoint=None, joints=model.preset.layout.name)
            for name, model in self.catalog.models.items()
        ]
        own = WorkerPublic(
            worker_id="fake",
            device=self.settings.device,
            backend="none",
            models=models,
            streams=len(self.streams),
            max_streams=self.settings.max_streams,
            jobs=0,
            max_jobs=self.settings.max_running_jobs,
            queue_depth=0,
            frames=0,
            batches={},
            started_at=self.started_at,
            heartbeat_at=time.time(),
        )
        return WorkersPublic(mode="embedded", workers=[own])

    def queue_depths(self) -> Mapping[str, int]:
        return {}
