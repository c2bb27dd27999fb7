"""Runs video jobs: decode -> session -> poses, progress into the store, result and overlay to files.

Jobs wait in a FIFO and at most ``max_running_jobs`` run at once. A job that was running when
the server stopped is put back in the queue on start-up (``requeue_interrupted``) and runs again
from the beginning; its upload is kept until the job finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from protocol import FramePoses, JobResultPublic, VideoPublic
from protocol.overlay import draw_poses
from service.config import Settings
from service.inference.runtime import InferenceRuntime
from service.jobs.store import JobRecord, JobStore, write_json_atomic
from service.metrics import ServiceMetrics
from service.streaming.factory import SessionFactory
from service.streaming.session import StreamFrame, StreamSession
from service.video import DecodedFrame, OverlayWriter, iter_frames, probe_video

__all__ = ["JobRunner"]

log = logging.getLogger("tdmi.jobs")
PROGRESS_EVERY_S = 0.5


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        runtime: InferenceRuntime,
        sessions: SessionFactory,
        settings: Settings,
        metrics: ServiceMetrics,
    ):
        self.store = store
        self.runtime = runtime
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._io = ThreadPoolExecutor(max_workers=2 * settings.max_running_jobs, thread_name_prefix="tdmi-io")
        self.accepting = True

    async def start(self) -> None:
        for record in self.store.requeue_interrupted():
            log.info("job %s was interrupted by a stop; running it again", record.id)
        for record in self.store.list(status="queued"):
            self._queue.put_nowait(record.id)
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"job-runner-{i}")
            for i in range(self.settings.max_running_jobs)
        ]

    async def stop(self) -> None:
        """Stop taking jobs; running ones go back to ``queued`` and run again after a restart."""
        self.accepting = False
        for task in self._tasks:
            task.cancel()
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        self.store.requeue_interrupted()
        self._io.shutdown(wait=False, cancel_futures=True)

    def queued(self) -> int:
        return self._queue.qsize()

    def enqueue(self, record: JobRecord) -> None:
        self._finished.setdefault(record.id, asyncio.Event())
        self._queue.put_nowait(record.id)

    async def wait(self, job_id: str) -> JobRecord:
        """Wait until the job is done, failed or cancelled."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        record = self.store.get(job_id)
        while record is not None and record.status in ("queued", "running"):
            await event.wait()
            record = self.store.get(job_id)
        assert record is not None
        return record

    async def cancel(self, job_id: str) -> bool:
        changed = self.store.mark_cancelled(job_id)
        task = self._running.get(job_id)
        if changed and task is not None:
            task.cancel()
        if changed:
            self._finished.setdefault(job_id, asyncio.Event()).set()
        return changed

    async def _serve(self) -> None:
        while True:
            job_id = await self._queue.get()
            record = self.store.get(job_id)
            if record is None or record.status != "queued":
                continue
            task = asyncio.create_task(self._run(record), name=f"job-{job_id}")
            self._running[job_id] = task
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # the runner itself is stopping
                    raise
                # else the job alone was cancelled (DELETE): serve the next one
            finally:
                self._running.pop(job_id, None)
                record = self.store.get(job_id)
                if record is None or record.status not in ("queued", "running"):
                    self._finished.setdefault(job_id, asyncio.Event()).set()

    async def _run(self, record: JobRecord) -> None:
        self.store.mark_running(record.id)
        self.metrics.active_jobs.inc()
        try:
            result = await self._process(record)
            write_json_atomic(self.store.result_path(record.id), result.model_dump(mode="json"))
            rendered = self.store.video_path(record.id) if record.options.get("render") else None
            self.store.mark_done(record.id, video_path=rendered)
            self.metrics.frames.labels("job").inc(len(result.frames))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = getattr(exc, "kind", type(exc).__name__)
            log.warning("job %s failed: %s", record.id, exc)
            self.metrics.errors.labels(f"job_{kind}").inc()
            self.store.mark_failed(record.id, str(exc))
        finally:
            self.metrics.active_jobs.dec()

    async def _process(self, record: JobRecord) -> JobResultPublic:
        loop = asyncio.get_running_loop()
        settings = self.settings
        path = self.store.upload_path(record.id)
        info = await loop.run_in_executor(
            self._io,
            lambda: probe_video(
                path, max_pixels=settings.max_video_pixels, max_seconds=settings.max_video_seconds
            ),
        )
        if not self.store.update_progress(record.id, 0, info.num_frames):
            raise asyncio.CancelledError
        model = self.runtime.get(record.model)
        options = record.options
        boxes = {int(k): np.asarray(v, dtype=np.float32) for k, v in (options.get("boxes") or {}).items()}
        session = self.sessions.new(
            f"job-{record.id}",
            model,
            live=False,
            lookahead=options.get("lookahead"),
            box_mode="client" if boxes else "auto",
        )
        writer = None
        if options.get("render"):
            writer = OverlayWriter.for_video(self.store.video_path(record.id), info)
        producer = asyncio.create_task(self._feed(session, path, boxes))
        frames: list[FramePoses] = []
        last_progress = time.monotonic()
        skeleton = model.preset.layout.skeleton
        try:
            async for outcome in session.outcomes():
                if outcome.error is not None:
                    raise RuntimeError(f"frame {outcome.frame.frame_id}: {outcome.error}")
                assert outcome.poses is not None
                frames.append(outcome.poses)
                if writer is not None:
                    image, poses = outcome.frame.image, outcome.poses
                    await loop.run_in_executor(
                        self._io, _render, writer, image, poses, skeleton, outcome.frame
                    )
                if time.monotonic() - last_progress > PROGRESS_EVERY_S:
                    self.store.update_progress(record.id, len(frames), info.num_frames)
                    last_progress = time.monotonic()
            await producer  # a decoding error surfaces here and fails the job
            if writer is not None:
                await loop.run_in_executor(self._io, writer.close)
                writer = None
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
            if writer is not None:
                writer.abort()
        self.store.update_progress(record.id, len(frames), len(frames))
        return JobResultPublic(
            job_id=record.id,
            model=model.name,
            video=VideoPublic(width=info.width, height=info.height, fps=float(info.fps), frames=len(frames)),
            skeleton=model.skeleton(),
            frames=frames,
        )

    async def _feed(self, session: StreamSession, path: Path, boxes: dict[int, np.ndarray]) -> None:
        """Decode on an I/O thread, one frame at a time, so that a full batcher slows decoding."""
        loop = asyncio.get_running_loop()
        frames: Iterator[DecodedFrame] = iter_frames(path)
        try:
            while True:
                start = time.perf_counter()
                decoded = await loop.run_in_executor(self._io, next, frames, None)
                self.metrics.observe_stage("decode", time.perf_counter() - start)
                if decoded is None:
                    break
                client = boxes.get(decoded.index)
                if boxes and client is None:
                    client = np.zeros((0, 5), dtype=np.float32)
                frame = StreamFrame(
                    frame_id=decoded.index,
                    image=decoded.image,
                    pts=decoded.seconds,
                    ticks=decoded.pts,
                    client_boxes=client,
                )
                await session.push(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            await session.end()  # the consumer drains what was decoded, then the error fails the job
            raise
        await session.end()


def _render(
    writer: OverlayWriter,
    image: np.ndarray,
    poses: FramePoses,
    skeleton: Sequence[tuple[int, int]],
    frame: StreamFrame,
) -> None:
    writer.write(
        draw_poses(image, poses.persons, skeleton), frame.ticks if frame.ticks is not None else poses.index
    )
