"""Where a frame's person boxes and track ids come from: the client, the detector, or the tracks.

``SessionBoxes`` is the ``BoxProvider`` of a session. Every frame first moves the tracker one frame
on (``PoseTracker.step``: each track's motion, moved by its latest confident keypoints).
Client boxes win when a frame has them, and are matched to the tracks. Otherwise the detector runs
on its schedule (a fixed grid of every ``detect_every``-th frame, and once between when a track is
lost; a frame may bring the detector's answer with it, started ahead by a video job) and its boxes
are matched to the tracks; a person the detector missed whom the pose model still sees keeps the
box its track followed. In between, the followed boxes are the frame's boxes. A live stream that
already follows someone does not wait for the detector (HOG takes longer than a frame on a small
CPU, and every detector frame would answer that much later): the frame goes on with the followed
boxes and the detector's answer is matched to the tracks on the first frame after it came back;
a video job waits, so that its result never depends on timing. Which keypoints a
frame follows is the session's rule (``SessionOptions.box_lag``). Boxes that were not the client's
are clipped to the current frame, so that boxes found in frames of another size (a live stream may
change resolution) never reach the client outside the frame.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import numpy as np

from tdmi.model.tracking import Followed, PoseTracker
from tdmi.protocol.stream import BoxMode
from tdmi.service.detection import Detections, DetectionSchedule, Detector, TimedDetections
from tdmi.service.metrics import NO_CPU, CpuSpan, StageTimer
from tdmi.service.streaming.session import StreamFrame

__all__ = ["BoxMode", "SessionBoxes", "clip_to_frame", "detect_timed", "detections_array"]

_NO_BOXES = np.zeros((0, 5), dtype=np.float32)
_NO_IDS = np.zeros(0, dtype=np.int64)


def detect_timed(detector: Detector, image: np.ndarray) -> TimedDetections:
    """The detector's answer and its seconds (on the detector's thread: queueing not counted)."""
    start = time.perf_counter()
    found = detector.detect(image)
    return found, time.perf_counter() - start


class SessionBoxes:
    def __init__(
        self,
        mode: BoxMode,
        detector: Detector | None,
        detect_every: int,
        executor: Executor,
        on_stage: StageTimer = lambda stage, seconds: None,
        cpu: CpuSpan = NO_CPU,
        *,
        live: bool = False,
    ):
        self.mode = mode
        self.detector = detector
        self.schedule = DetectionSchedule(detect_every)
        self.executor = executor
        self.live = live
        self._on_stage = on_stage
        self._cpu = cpu  # the tracker's work, counted as the track stage's (not the detector's wait)
        self._late: asyncio.Future[TimedDetections] | None = None  # a live detection still running

    async def boxes_for(self, frame: StreamFrame, tracker: PoseTracker) -> tuple[np.ndarray, np.ndarray]:
        if frame.client_boxes is not None and self.mode != "detector":
            # the client's boxes, every one kept (matched without their scores), are the truth of
            # each frame: the tracks follow them on their motion alone, not the keypoints
            with self._cpu("track"):
                tracker.step(follow_keypoints=False)
                return frame.client_boxes, tracker.match(frame.client_boxes[:, :4], pose_aware=False)
        with self._cpu("track"):
            followed = tracker.step()
        if self.mode == "client" or self.detector is None:
            return _NO_BOXES, _NO_IDS
        if self._late is not None and self._late.done():  # a live detection came back: match it now
            late, self._late = self._late, None
            return self._matched(await late, followed, tracker, frame.image.shape)
        tracked = len(followed.track_ids) + followed.lost
        detect = self.schedule.should_detect(tracked=tracked, propagated=len(followed.track_ids))
        if detect and self._late is None:
            pending = frame.detected_ahead or asyncio.get_running_loop().run_in_executor(
                self.executor, detect_timed, self.detector, frame.image
            )
            if not (self.live and len(followed.track_ids)):
                return self._matched(await pending, followed, tracker, frame.image.shape)
            self._late = asyncio.ensure_future(pending)  # people to follow meanwhile: do not wait
        with self._cpu("track"):
            return _inside(followed.boxes, followed.track_ids, frame.image.shape)

    def _matched(
        self, timed: TimedDetections, followed: Followed, tracker: PoseTracker, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The detector's boxes matched to the tracks; a person it missed whom the pose model still
        sees keeps the followed box."""
        found, seconds = timed
        self._on_stage("detect", seconds)
        with self._cpu("track"):
            detections, visible = _clip(detections_array(found), shape)
            detections = detections[visible]
            sure = None if found.sure is None else found.sure[visible]
            ids = tracker.match(detections, sure=sure, keep_measured=True)
            seen = followed.measured & ~np.isin(followed.track_ids, ids)  # missed by the detector only
            kept = ids >= 0
            boxes = np.concatenate([detections[kept], followed.boxes[seen]])
            return _inside(boxes, np.concatenate([ids[kept], followed.track_ids[seen]]), shape)


def _inside(
    boxes: np.ndarray, track_ids: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame, with their track ids; boxes left empty go, ids with them."""
    clipped, kept = _clip(boxes, shape)
    return clipped[kept], track_ids[kept]


def _clip(boxes: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every box clipped to an image of ``shape`` (H, W, ...), and which ones keep an area."""
    height, width = shape[:2]
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return clipped, (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])


def clip_to_frame(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N, 5) boxes clipped to an image of ``shape`` (H, W, ...); boxes left empty are dropped."""
    clipped, kept = _clip(boxes, shape)
    return clipped[kept]


def detections_array(found: Detections) -> np.ndarray:
    """``Detections`` as the (N, 5) x1, y1, x2, y2, score array sessions carry."""
    return np.concatenate([found.xyxy, found.scores[:, None]], axis=1).astype(np.float32)
