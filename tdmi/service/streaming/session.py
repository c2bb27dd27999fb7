"""``StreamSession``: one video job or live feed, from frames in to poses out, in frame order.

Frames enter a rolling buffer. Frame t is *ready* when frame t + lookahead has arrived (or the
stream has ended); it then gets its person boxes and track ids and goes to the batcher as one
``FrameWork`` whose clip comes from ``tdmi.model.data.clips.clip_indices``, the same rule training
uses. Results come back out of order from batches; ``outcomes()`` yields them in frame order.

Between detector runs the tracker carries the boxes, corrected by earlier keypoints, which a frame
follows by one of two rules:

- ``box_lag`` k (video jobs): frame t follows the keypoints of frame t - k, waiting for them if
  need be, and the tracker takes each frame's keypoints in frame order. A job's result then
  depends on its input and settings only, never on how fast its frames came back; k frames of
  a job are in flight at most (k = 1: the freshest boxes, one frame at a time per job).
- ``box_lag`` None (live streams): latency first; a frame follows the latest keypoints that are
  back when it is ready, so its boxes depend on timing.

With ``feature_reuse`` each track is cropped with an anchor box that stays put while its person
stays inside it (``tdmi.service.streaming.anchors``), and the frame carries the stream's feature cache,
so the model runner runs the backbone once per frame and track instead of once per clip position.

With a ``smoother`` (``smoothing=one_euro``) the poses a frame is answered with are filtered along
their tracks in frame order, in ``outcomes()``, the one place live streams and jobs share; the
tracker and the box propagation keep the raw keypoints, so smoothing never feeds back into which
boxes are cropped or how tracks continue (a lagging box would crop a fast person short).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tdmi.model.data.clips import clip_indices
from tdmi.model.smoothing import PoseSmoother
from tdmi.model.tracking import PoseTracker
from tdmi.protocol.poses import FramePoses, PersonPose
from tdmi.service.errors import public_failure
from tdmi.service.inference.feature_cache import FeatureCache, FeatureRequest
from tdmi.service.inference.work import Dropped, FrameWork, PoseArrays
from tdmi.service.metrics import NO_CPU, CpuSpan
from tdmi.service.streaming.anchors import TrackAnchors

if TYPE_CHECKING:
    from tdmi.service.detection import TimedDetections

__all__ = [
    "BoxProvider",
    "FrameOutcome",
    "InferenceQueue",
    "SessionOptions",
    "StreamFrame",
    "StreamSession",
]


_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


@dataclass
class StreamFrame:
    """A decoded frame as it enters a session."""

    frame_id: int  # video frame index, or the live client's frame id
    image: np.ndarray  # (H, W, 3) uint8 RGB
    pts: float | None = None  # seconds
    ticks: int | None = None  # the same PTS in the source's time base (video files)
    timestamp: float | None = None  # the live client's capture time, echoed back
    client_boxes: np.ndarray | None = None  # (N, 5) x1, y1, x2, y2, score given by the client
    # the detector's answer and its seconds, started before the frame arrived (video jobs)
    detected_ahead: asyncio.Future[TimedDetections] | None = None
    arrived: float = 0.0  # monotonic arrival time, set by the session
    skip_reason: str | None = None  # answered with a drop notice instead of inference


@dataclass(frozen=True)
class FrameOutcome:
    """What a frame became: poses, or a drop notice, or an error."""

    frame: StreamFrame
    poses: FramePoses | None = None
    dropped: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SessionOptions:
    radius: int  # d: the model reads frames t-d .. t+d
    lookahead: int  # future frames to wait for, 0..d
    live: bool
    staleness_s: float | None = None  # live frames waiting longer than this are dropped
    max_in_flight: int = 8  # frames submitted but not yet consumed (video jobs wait beyond it)
    feature_reuse: bool = False  # crop tracks with anchors and reuse per-frame backbone features
    reuse_drift_iou: float = 0.85  # re-anchor a track when its box's IoU with the anchor falls below
    box_lag: int | None = None  # frame t's boxes follow frame t - box_lag's keypoints; None: the latest

    def __post_init__(self) -> None:
        if self.box_lag is not None and not 1 <= self.box_lag <= self.max_in_flight:
            raise ValueError(f"box_lag must be between 1 and {self.max_in_flight}, got {self.box_lag}")


class InferenceQueue(Protocol):
    async def submit(self, work: FrameWork) -> bool: ...


class BoxProvider(Protocol):
    async def boxes_for(self, frame: StreamFrame, tracker: PoseTracker) -> tuple[np.ndarray, np.ndarray]:
        """(N, 5) boxes with scores for ``frame`` and their track ids (N,), from ``tracker``."""
        ...


@dataclass
class _Pending:
    frame: StreamFrame
    boxes: np.ndarray  # (N, 5)
    track_ids: np.ndarray
    future: asyncio.Future[PoseArrays | Dropped]


class StreamSession:
    def __init__(
        self,
        stream_id: str,
        queue: InferenceQueue,
        options: SessionOptions,
        boxes: BoxProvider,
        tracker: PoseTracker,
        *,
        smoother: PoseSmoother | None = None,
        cpu: CpuSpan = NO_CPU,
    ):
        if not 0 <= options.lookahead <= options.radius:
            raise ValueError(f"lookahead must be between 0 and {options.radius}, got {options.lookahead}")
        self.stream_id = stream_id
        self.queue = queue
        self.options = options
        self.boxes = boxes
        self.tracker = tracker
        self.smoother = smoother
        self.cpu = cpu
        self._buffer: dict[int, StreamFrame] = {}  # by arrival position
        self._arrived = 0  # frames pushed so far
        self._submitted = 0  # frames handed to the batcher (in order)
        self._ended = False
        self._pending: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._in_flight = asyncio.Semaphore(options.max_in_flight)
        # box_lag mode: the track ids and answer of each submitted frame, until a later frame used it
        self._answers: dict[int, tuple[np.ndarray, asyncio.Future[PoseArrays | Dropped]]] = {}
        self.frames_dropped = 0
        reuse = options.feature_reuse and options.radius > 0
        self.anchors = TrackAnchors(options.reuse_drift_iou) if reuse else None
        self.feature_cache = FeatureCache() if reuse else None

    async def push(self, frame: StreamFrame) -> None:
        """Add the next frame; submits every frame that became ready."""
        if self._ended:
            raise RuntimeError("stream already ended")
        with self.cpu("buffer"):
            frame.arrived = time.monotonic()
            self._buffer[self._arrived] = frame
            self._arrived += 1
        while self._submitted + self.options.lookahead < self._arrived:
            await self._submit(self._submitted)

    async def end(self) -> None:
        """No more frames: the remaining ones are answered with the neighbours they have."""
        self._ended = True
        while self._submitted < self._arrived:
            await self._submit(self._submitted)
        self._pending.put_nowait(None)

    def close(self) -> None:
        """Let go of the frames: the stream is gone. A live stream's objects (WebSocket, feed,
        session) end up in reference cycles that only the garbage collector's rare full pass
        frees, and their images must not wait for it (a soak held ~1 MiB per ended stream)."""
        self._ended = True
        self._buffer.clear()
        self._answers.clear()
        while not self._pending.empty():
            self._pending.get_nowait()
        self._pending.put_nowait(None)  # a reader of outcomes() ends, even one that lost its cancel
        if self.feature_cache is not None:
            self.feature_cache.clear()

    async def outcomes(self) -> AsyncIterator[FrameOutcome]:
        """Every frame's outcome, in frame order; ends after ``end()``."""
        while (pending := await self._pending.get()) is not None:
            try:
                outcome = await pending.future
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one frame failed in the model runner; the stream goes on
                failure = public_failure(exc, f"inference of frame {pending.frame.frame_id}")
                yield FrameOutcome(pending.frame, error=f"inference failed: {failure}")
                continue
            finally:
                if not self.options.live:
                    self._in_flight.release()
            if isinstance(outcome, Dropped):
                self.frames_dropped += 1
                yield FrameOutcome(pending.frame, dropped=outcome.reason)
            else:
                yield FrameOutcome(pending.frame, poses=self._poses(pending, outcome.keypoints))
        if self.feature_cache is not None:  # every frame is answered: the model runner touches it no more
            self.feature_cache.clear()

    def _poses(self, pending: _Pending, keypoints: np.ndarray) -> FramePoses:
        with self.cpu("track"):
            if self.options.box_lag is None and len(keypoints):  # latency first: the latest keypoints lead
                self.tracker.observe_keypoints(pending.track_ids, keypoints)
            if self.smoother is not None:  # on what the client gets only: boxes and tracks follow the raw
                keypoints = self.smoother(pending.track_ids, keypoints, _seconds(pending.frame))
        with self.cpu("encode"):
            return self._frame_poses(pending, keypoints)

    def _frame_poses(self, pending: _Pending, keypoints: np.ndarray) -> FramePoses:
        persons = [
            PersonPose(
                track_id=int(track_id),
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                box_score=float(box[4]),
                keypoints=[(float(x), float(y), float(s)) for x, y, s in points],
            )
            for track_id, box, points in zip(pending.track_ids, pending.boxes, keypoints)
        ]
        return FramePoses(index=pending.frame.frame_id, pts=pending.frame.pts, persons=persons)

    async def _submit(self, position: int) -> None:
        if not self.options.live:
            await self._in_flight.acquire()
        frame = self._buffer[position]
        if frame.skip_reason is None:
            pending = await self._infer(position, frame)
        else:  # answered without inference; its image stays in the buffer as a neighbour
            answer: asyncio.Future[PoseArrays | Dropped] = asyncio.get_running_loop().create_future()
            answer.set_result(Dropped(frame.skip_reason))
            pending = _Pending(frame, np.zeros((0, 5), np.float32), np.zeros(0, np.int64), answer)
            self._advance()
        if self.options.live:  # nobody draws a live frame: its answer must not keep its image
            pending.frame = dataclasses.replace(frame, image=_NO_IMAGE)
        self._pending.put_nowait(pending)

    async def _infer(self, position: int, frame: StreamFrame) -> _Pending:
        """Boxes, track ids and the clip of the frame at ``position``; it goes to the batcher."""
        await self._await_keypoints(position)
        boxes, track_ids = await self.boxes.boxes_for(frame, self.tracker)
        with self.cpu("buffer"):
            work = self._work(position, boxes, track_ids)
            self._advance()
        if not len(boxes):
            work.resolve(PoseArrays(np.zeros((0, 0, 3), dtype=np.float32)))
        elif not await self.queue.submit(work):
            work.resolve(Dropped("queue full: the server is overloaded"))
        if self.options.box_lag is not None:
            self._answers[position] = (track_ids, work.future)
        return _Pending(frame, boxes, track_ids, work.future)

    def _work(self, position: int, boxes: np.ndarray, track_ids: np.ndarray) -> FrameWork:
        """The frame at ``position`` as the batcher takes it: its clip's images and crop boxes."""
        total = self._arrived if self._ended else None
        clip = clip_indices(position, total, self.options.radius, self.options.lookahead)
        crop_boxes, features = self._crops(position, track_ids, boxes[:, :4])
        return FrameWork(
            stream_id=self.stream_id,
            frame_index=position,
            images={p: self._buffer[p].image for p in set(clip)},
            clip=list(clip),
            boxes=crop_boxes,
            live=self.options.live,
            deadline=self._deadline(),
            features=features,
        )

    def _advance(self) -> None:
        """One more frame submitted: frames no later clip can hold leave the buffer."""
        self._submitted += 1
        self._forget_before(self._submitted - self.options.radius)

    async def _await_keypoints(self, position: int) -> None:
        """``box_lag`` mode: the tracker gets the keypoints of the frame at ``position`` - k first,
        waiting for them if need be, so the frame's boxes never depend on timing."""
        lag = self.options.box_lag
        if lag is None:
            return
        answer = self._answers.pop(position - lag, None)
        if answer is None:  # before the first frame, or a frame answered without inference
            return
        track_ids, future = answer
        try:
            outcome = await asyncio.shield(future)  # the consumer awaits it too
        except asyncio.CancelledError:
            raise
        except Exception:  # that frame failed in the model runner, and fails the job: nothing to follow
            return
        if isinstance(outcome, PoseArrays) and len(outcome.keypoints):
            self.tracker.observe_keypoints(track_ids, outcome.keypoints)

    def _crops(
        self, position: int, track_ids: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, FeatureRequest | None]:
        """The boxes the frame's clips are cropped with: the persons' own, or their tracks' anchors."""
        if self.anchors is None or self.feature_cache is None or not len(boxes):
            return boxes, None
        anchors = self.anchors.assign(track_ids, boxes)
        request = FeatureRequest(
            self.feature_cache,
            tuple(a.anchor_id for a in anchors),
            keep_from=position + 1 - self.options.radius,  # where the next key frame's clip starts
        )
        return np.stack([a.box for a in anchors]).astype(np.float32), request

    def _deadline(self) -> float | None:
        """Live frames may wait in the queue at most the staleness budget from when they are ready."""
        if not self.options.live or self.options.staleness_s is None:
            return None
        return time.monotonic() + self.options.staleness_s

    def _forget_before(self, position: int) -> None:
        for old in [p for p in self._buffer if p < position]:
            del self._buffer[old]


NOMINAL_FPS = 30.0  # the smoother's clock for live frames sent without a capture timestamp


def _seconds(frame: StreamFrame) -> float:
    """The smoother's clock: a job's PTS (deterministic), else the live client's capture time,
    else the frame id at a nominal 30 fps."""
    if frame.pts is not None:
        return frame.pts
    if frame.timestamp is not None:
        return frame.timestamp
    return frame.frame_id / NOMINAL_FPS
