"""When a stream runs its detector; in between, the tracker carries each person's box
(``tdmi.model.tracking``: its motion, moved by the keypoints already found).

The schedule runs the real detector every N frames, to find people who just came in, and at once
(once per interval) when a tracked person could not be carried over.
"""

from __future__ import annotations

__all__ = ["DetectionSchedule"]


class DetectionSchedule:
    """Decides, frame by frame, whether a stream runs its detector or propagates boxes.

    The detector runs on a fixed grid, the stream's frames 0, every, 2 * every, ..., and once
    between two grid frames when a person was lost on the way (the first such frame). An extra
    detection does not move the grid, so the frames that are surely detected are known before
    they arrive: a video job detects them ahead, on the detector's thread, while the model works
    on the frames before (``on_grid``). The one-extra limit keeps a model that loses people
    every frame (a weak model on real video) from running the detector every frame.
    """

    def __init__(self, every: int):
        if every < 1:
            raise ValueError(f"detector interval must be >= 1 frame, got {every}")
        self.every = every
        self._position = 0  # frames decided so far
        self._extra_spent = False  # this grid interval's extra detection

    def on_grid(self, position: int) -> bool:
        """Whether the stream's frame at ``position`` (0-based) is detected whatever happens."""
        return position % self.every == 0

    def should_detect(self, tracked: int, propagated: int) -> bool:
        """Call once per frame, with the number of persons whose keypoints were carried over
        (``tracked``) and of boxes that came out (``propagated``). True on the grid, and on the
        first frame of a grid interval where a person was lost on the way (``propagated < tracked``)."""
        position, self._position = self._position, self._position + 1
        if self.on_grid(position):
            self._extra_spent = False
            return True
        if propagated < tracked and not self._extra_spent:
            self._extra_spent = True
            return True
        return False
