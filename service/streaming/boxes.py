"""Where a frame's person boxes come from: the client, the detector, or the last keypoints.

``SessionBoxes`` is the ``BoxProvider`` of a session. Client boxes win when a frame has them.
Otherwise the detector runs on its cadence (every ``detect_every`` frames, and whenever no
track is left to follow); in between, each track's box is propagated from its latest keypoints.
A live stream sends frame t+1 before frame t's keypoints are back: until the first keypoints
arrive, the boxes of the frame before are carried over as they are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from tdmi.protocol.stream import BoxMode
from tdmi.service.detection import Detections, DetectionSchedule, Detector, boxes_from_keypoints
from tdmi.service.streaming.session import StreamFrame

__all__ = ["BoxMode", "SessionBoxes", "detections_array"]


class SessionBoxes:
    def __init__(
        self,
        mode: BoxMode,
        detector: Detector | None,
        detect_every: int,
        executor: Executor,
        on_stage: Callable[[str, float], None] = lambda stage, seconds: None,
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
        else:  # no keypoints back yet: follow the boxes of the frame before
            tracked, propagated = len(self._last), self._last
        if self.schedule.should_detect(tracked=tracked, propagated=len(propagated)):
            start = time.perf_counter()
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self.executor, self.detector.detect, frame.image)
            self._on_stage("detect", time.perf_counter() - start)
            propagated = detections_array(found)
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


def detections_array(found: Detections) -> np.ndarray:
    """``Detections`` as the (N, 5) x1, y1, x2, y2, score array sessions carry."""
    return np.concatenate([found.xyxy, found.scores[:, None]], axis=1).astype(np.float32)
