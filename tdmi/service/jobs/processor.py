"""One video job's work: decode -> session -> poses, the overlay video, progress reports.

Decoding and overlay encoding each run on a thread of the job's own, beside the model: the
decoder reads up to ``READ_AHEAD`` + ``detect_every`` frames ahead of the session, the encoder
drains up to ``ENCODE_BEHIND`` drawn frames behind it; both queues are bounded, so a slow model
slows decoding down instead of memory growing, and a slow encoder holds the results back. The
frames that the detection schedule surely detects (its grid) go to the detector's thread as soon
as they are decoded, so detection overlaps the model too; the answers are the ones the session
would have got itself, so results do not change.

A job's two threads are kept for the next job: two new threads per job held about 100 MiB more
resident memory over a few hundred jobs (native memory that not even ``malloc_trim`` returned).

Shared by the embedded runner (SQLite) and the scale-out worker (Redis): both hand it a record,
where to write the overlay, and a progress callback whose False answer (the job was cancelled
or taken by someone else) stops the work.
"""

from __future__ import annotations

import asyncio
import time
from asyncio import Future
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdmi.protocol import FramePoses, JobResultPublic, VideoPublic
from tdmi.protocol.overlay import draw_poses
from tdmi.service.config import Settings
from tdmi.service.detection import TimedDetections
from tdmi.service.inference.runtime import InferenceRuntime, ModelRuntime
from tdmi.service.inference.threads import named_threads
from tdmi.service.jobs.store import JobRecord
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.streaming.factory import SessionFactory
from tdmi.service.streaming.session import StreamFrame, StreamSession
from tdmi.service.video import (
    DecodedFrame,
    OverlayWriter,
    VideoFrames,
    VideoInfo,
    limits_of,
    probe_video,
)

__all__ = ["JobProcessor", "ProgressReport"]

PROGRESS_EVERY_S = 0.5
READ_AHEAD = 4  # decoded frames waiting for the session, beyond one detection interval
ENCODE_BEHIND = 8  # frames with poses waiting for the overlay encoder


class _Stopped(Exception):
    """The progress report said stop (cancelled, or the job was taken by another worker)."""


# (frames done, frames total) -> keep going?
ProgressReport = Callable[[int, int], Awaitable[bool]]


class _JobThreads:
    """A running job's decode and encode threads, each a one-thread executor (work in order)."""

    def __init__(self, number: int):
        self.decode = named_threads(f"tdmi-decode-{number}")
        self.encode = named_threads(f"tdmi-encode-{number}")

    def shutdown(self) -> None:
        self.decode.shutdown(wait=False, cancel_futures=True)
        self.encode.shutdown(wait=False, cancel_futures=True)


@dataclass(eq=False)
class _Run:
    """One job's run, as its steps share it."""

    record: JobRecord
    report: ProgressReport
    info: VideoInfo
    model: ModelRuntime
    session: StreamSession
    boxes: dict[int, np.ndarray]  # the client's, by frame index; empty: the detector finds people
    writer: OverlayWriter | None  # None without an overlay, and once it is closed
    threads: _JobThreads
    frames: list[FramePoses] = field(default_factory=list)
    to_encode: asyncio.Queue[tuple[np.ndarray, FramePoses, StreamFrame] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=ENCODE_BEHIND)
    )


class JobProcessor:
    def __init__(
        self,
        runtime: InferenceRuntime,
        sessions: SessionFactory,
        settings: Settings,
        metrics: ServiceMetrics,
        io: Executor,
    ):
        self.runtime = runtime
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self.io = io
        self._idle_threads: list[_JobThreads] = []  # as many exist as jobs ever ran at once
        self._thread_sets = 0

    def close(self) -> None:
        """Stop the jobs' threads (the node is stopping; running jobs were cancelled)."""
        for threads in self._idle_threads:
            threads.shutdown()
        self._idle_threads.clear()

    def _take_threads(self) -> _JobThreads:
        if self._idle_threads:
            return self._idle_threads.pop()
        self._thread_sets += 1
        return _JobThreads(self._thread_sets)

    async def run(
        self, record: JobRecord, report: ProgressReport, video_path: Path | None
    ) -> JobResultPublic:
        """Poses of every frame of the job's upload; writes the overlay to ``video_path`` if given.

        Raises ``asyncio.CancelledError`` when ``report`` answers False.
        """
        path = record.input_path
        if path is None:
            raise RuntimeError(f"job {record.id} has no upload")
        info = await self._probe(path, record)
        if not await report(0, info.num_frames):
            raise asyncio.CancelledError
        run = self._open(record, report, info, video_path)
        video = VideoFrames(path, **limits_of(self.settings), name=record.options.get("filename"))
        await self._supervise(run, video)
        await report(len(run.frames), len(run.frames))
        self.metrics.frames.labels("job").inc(len(run.frames))
        return _result(run, video)

    async def _probe(self, path: Path, record: JobRecord) -> VideoInfo:
        limits, name = limits_of(self.settings), record.options.get("filename")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io, lambda: probe_video(path, **limits, name=name))

    def _open(
        self, record: JobRecord, report: ProgressReport, info: VideoInfo, video_path: Path | None
    ) -> _Run:
        """The run's session on the job's model (fed the client's boxes if it gave any), its
        overlay writer and its threads."""
        model = self.runtime.get(record.model)
        options = record.options
        given = options.get("boxes") or {}
        # (N, 5) each, an empty list (nobody in the frame) too: a (0,) array failed the session
        boxes = {int(k): np.asarray(v, dtype=np.float32).reshape(-1, 5) for k, v in given.items()}
        session = self.sessions.new(
            f"job-{record.id}",
            model,
            live=False,
            lookahead=options.get("lookahead"),
            box_mode="client" if boxes else "auto",
        )
        writer = OverlayWriter.for_video(video_path, info) if video_path is not None else None
        return _Run(record, report, info, model, session, boxes, writer, self._take_threads())

    async def _supervise(self, run: _Run, video: VideoFrames) -> None:
        """Feed, collect and encode at once; whichever fails first fails the job (a feed that
        failed may leave the session unended). The threads go back for the next job."""
        tasks = [
            asyncio.create_task(self._feed(run.session, video, run.boxes, run.threads.decode)),
            asyncio.create_task(self._collect(run)),
            asyncio.create_task(self._encode(run)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                failure = task.exception() if task.done() else None
                if failure is not None:
                    raise failure
            if run.writer is not None:
                await asyncio.get_running_loop().run_in_executor(run.threads.encode, run.writer.close)
                run.writer = None
        except _Stopped:
            raise asyncio.CancelledError from None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if run.writer is not None:
                run.writer.abort()
            self._idle_threads.append(run.threads)  # a call still running ends before the next job's

    async def _collect(self, run: _Run) -> None:
        """The session's poses in order, into the result and to the encoder; progress reported
        every ``PROGRESS_EVERY_S`` (a False answer stops the run)."""
        last_progress = time.monotonic()
        async for outcome in run.session.outcomes():
            if outcome.error is not None:
                raise RuntimeError(f"frame {outcome.frame.frame_id}: {outcome.error}")
            assert outcome.poses is not None
            run.frames.append(outcome.poses)
            if run.writer is not None:
                await run.to_encode.put((outcome.frame.image, outcome.poses, outcome.frame))
            if time.monotonic() - last_progress > PROGRESS_EVERY_S:
                if not await run.report(len(run.frames), run.info.num_frames):
                    raise _Stopped
                last_progress = time.monotonic()
        await run.to_encode.put(None)

    async def _encode(self, run: _Run) -> None:
        """Frames with their poses drawn, into the overlay, on the job's encode thread."""
        loop = asyncio.get_running_loop()
        skeleton = run.model.preset.layout.skeleton
        while (item := await run.to_encode.get()) is not None and run.writer is not None:
            image, poses, frame = item
            start = time.perf_counter()
            await loop.run_in_executor(
                run.threads.encode, _render, run.writer, image, poses, skeleton, frame, self.settings
            )
            self.metrics.observe_stage("encode", time.perf_counter() - start)

    async def _feed(
        self,
        session: StreamSession,
        video: VideoFrames,
        boxes: dict[int, np.ndarray],
        decode_thread: Executor,
    ) -> None:
        """Frames into the session in order, decoded up to ``READ_AHEAD`` frames ahead on the job's
        decode thread."""
        loop = asyncio.get_running_loop()
        frames: Iterator[DecodedFrame] = iter(video)
        ahead: asyncio.Queue[tuple[DecodedFrame, Future[TimedDetections] | None] | Exception | None]
        ahead = asyncio.Queue(maxsize=READ_AHEAD + self.settings.detect_every)
        detecting: list[Future[TimedDetections]] = []

        async def decode() -> None:
            while True:
                start = time.perf_counter()
                try:
                    decoded = await loop.run_in_executor(decode_thread, next, frames, None)
                except Exception as exc:  # handed to the feed, in its place in the order
                    await ahead.put(exc)
                    return
                self.metrics.observe_stage("decode", time.perf_counter() - start)
                if decoded is None:
                    await ahead.put(None)
                    return
                detection = None if boxes else self.sessions.detect_ahead(decoded.index, decoded.image)
                if detection is not None:
                    detecting.append(detection)
                await ahead.put((decoded, detection))

        decoder = asyncio.create_task(decode())
        try:
            while (item := await ahead.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                decoded, detection = item
                client = boxes.get(decoded.index)
                if boxes and client is None:
                    client = np.zeros((0, 5), dtype=np.float32)
                frame = StreamFrame(
                    frame_id=decoded.index,
                    image=decoded.image,
                    pts=decoded.seconds,
                    ticks=decoded.pts,
                    client_boxes=client,
                    detected_ahead=detection,
                )
                await session.push(frame)
        except asyncio.CancelledError:
            _cancel(detecting)
            raise
        except Exception:
            # the error fails the job at once; ending the session instead would await the cancelled
            # detections of the frames it holds, and the job hung (a decoder failing at frame 1)
            _cancel(detecting)
            raise
        finally:
            decoder.cancel()
            await asyncio.gather(decoder, return_exceptions=True)
        await session.end()  # the session still awaits the detections of the frames it holds


def _result(run: _Run, video: VideoFrames) -> JobResultPublic:
    info = run.info
    return JobResultPublic(
        job_id=run.record.id,
        model=run.model.name,
        video=VideoPublic(
            width=info.width,
            height=info.height,
            fps=float(info.fps),
            frames=len(run.frames),
            stream=info.stream,
            rotation=info.rotation,
            corrupt_frames=video.corrupt_frames,
        ),
        skeleton=run.model.skeleton(),
        frames=run.frames,
    )


def _cancel(detections: list[Future[TimedDetections]]) -> None:
    """A failed or cancelled job's detections that have not started (a running one finishes
    unheard). Never on success: the session awaits those of the frames it still holds."""
    for detection in detections:
        detection.cancel()


def _render(
    writer: OverlayWriter,
    image: np.ndarray,
    poses: FramePoses,
    skeleton: Sequence[tuple[int, int]],
    frame: StreamFrame,
    settings: Settings,
) -> None:
    drawn = draw_poses(image, poses.persons, skeleton, settings.overlay_score_threshold)
    writer.write(drawn, frame.ticks if frame.ticks is not None else poses.index)
