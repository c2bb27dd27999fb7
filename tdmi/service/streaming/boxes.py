"""Where a frame's person boxes come from: the client, the detector, or the last keypoints.

``SessionBoxes`` is the ``BoxProvider`` of a session. Client boxes win when a frame has them.
Otherwise the detector runs on its schedule (a fixed grid of every ``detect_every``-th frame, and
whenever a track is lost; a frame may bring the detector's answer with it, started ahead by a
video job); in between, each track's box is propagated from its latest keypoints.
Which keypoints a frame follows is the session's rule (``SessionOptions.box_lag``). Until the
first keypoints are back, the boxes of the frame before are carried over. Boxes that were not
the client's are clipped to the current frame, so that boxes found in frames of another size
(a live stream may change resolution) never reach the client outside the frame.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import numpy as np

from tdmi.protocol.stream import BoxMode
from tdmi.service.detection import (
    Detections,
    DetectionSchedule,
    Detector,
    TimedDetections,
    boxes_from_keypoints,
)
from tdmi.service.metrics import StageTimer
from tdmi.service.streaming.session import StreamFrame

__all__ = ["BoxMode", "SessionBoxes", "clip_to_frame", "detect_timed", "detections_array"]


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
    ):
        self.mode = mode
        self.detector = detector
        self.schedule = DetectionSchedule(detect_every)
        self.executor = executor
        self._on_stage = on_stage
        self._last = np.zeros((0, 5), dtype=np.float32)  # the boxes of the frame before

    async def boxes_for(self, frame: StreamFrame, previous: dict[int, np.ndarray]) -> np.ndarray:
        if frame.client_boxes is not None and self.mode != "detector":
            return frame.client_boxes
        if self.mode == "client" or self.detector is None:
            return np.zeros((0, 5), dtype=np.float32)
        if previous:
            tracked, propagated = len(previous), self._propagate(previous, frame.image.shape)
        else:  # no keypoints to follow: the boxes of the frame before
            tracked, propagated = len(self._last), clip_to_frame(self._last, frame.image.shape)
        if self.schedule.should_detect(tracked=tracked, propagated=len(propagated)):
            pending = frame.detected_ahead or asyncio.get_running_loop().run_in_executor(
                self.executor, detect_timed, self.detector, frame.image
            )
            found, seconds = await pending
            self._on_stage("detect", seconds)
            propagated = clip_to_frame(detections_array(found), frame.image.shape)
        self._last = propagated
        return propagated

    @staticmethod
    def _propagate(previous: dict[int, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        """Boxes around each tracked person's last keypoints, scored by their mean joint score."""
        if not previous:
            return np.zeros((0, 5), dtype=np.float32)
        keypoints = np.stack(list(previous.values()))
        boxes, index = boxes_from_keypoints(keypoints, (shape[1], shape[0]))
        scores = keypoints[index, :, 2].mean(axis=1)
        return np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float32)


def clip_to_frame(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N, 5) boxes clipped to an image of ``shape`` (H, W, ...); boxes left empty are dropped."""
    height, width = shape[:2]
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return clipped[(clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])]


def detections_array(found: Detections) -> np.ndarray:
    """``Detections`` as the (N, 5) x1, y1, x2, y2, score array sessions carry."""
    return np.concatenate([found.xyxy, found.scores[:, None]], axis=1).astype(np.float32)
