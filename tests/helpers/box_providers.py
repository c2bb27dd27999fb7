"""A session's ``BoxProvider`` for tests that are not about boxes: fixed boxes, matched to the tracks."""

from __future__ import annotations

import numpy as np

from tdmi.model.tracking import PoseTracker
from tdmi.service.streaming.session import StreamFrame


class FixedBoxes:
    """The frame's client boxes when it has them, else ``boxes`` (none given: every frame must
    bring its own, as a video job's ``boxes`` do); matched to the tracks after their step."""

    def __init__(self, boxes: np.ndarray | None = None):
        self.boxes = boxes

    async def boxes_for(self, frame: StreamFrame, tracker: PoseTracker) -> tuple[np.ndarray, np.ndarray]:
        tracker.step()
        boxes = frame.client_boxes if frame.client_boxes is not None else self.boxes
        assert boxes is not None, "this frame has no boxes"
        return boxes, tracker.match(boxes[:, :4])
