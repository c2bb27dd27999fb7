"""Where a frame's person boxes come from: the client, the detector, or the last keypoints.

``SessionBoxes`` is the ``BoxProvider`` of a session. Client boxes win when a frame has them.
Otherwise the detector runs on its cadence (every ``detect_every`` frames, and whenever no
track is left to follow); in between, each track's box is propagated from its latest keypoints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Literal

import numpy as np

from service.detection import Detector
from service.detection.propagate import DetectionSchedule, boxes_from_keypoints
from service.streaming.session import StreamFrame

__all__ = ["BoxMode", "SessionBoxes"]

BoxMode = Literal["auto", "client", "detector"]


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

    async def boxes_for(self, frame: StreamFrame, previous: dict[int, np.ndarray]) -> np.ndarray:
        if frame.client_boxes is not None and self.mode != "detector":
            return frame.client_boxes
        if self.mode == "client" or self.detector is None:
            return np.zeros((0, 5), dtype=np.float32)
        propagated = boxes_from_keypoints(list(previous.values()), frame.image.shape[:2])
        if not self.schedule.should_detect(len(propagated)):
            return propagated
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.executor, self.detector.detect, frame.image)
        self._on_stage("detect", time.perf_counter() - start)
        return np.concatenate([found.xyxy, found.scores[:, None]], axis=1).astype(np.float32)
