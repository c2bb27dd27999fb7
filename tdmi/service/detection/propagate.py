"""Person boxes carried over from the keypoints already found, so the detector need not run every frame.

Between two frames a person moves little: a box around the joints the pose model was confident
about, enlarged for the head top, the feet and the motion, finds them again. The schedule runs
the real detector every N frames, to find people who just came in, and at once (once per
interval) when a tracked person could not be carried over.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DetectionSchedule", "boxes_from_keypoints"]


def boxes_from_keypoints(
    keypoints: np.ndarray,
    image_size: tuple[int, int],
    *,
    min_score: float = 0.3,
    min_joints: int = 3,
    enlarge: float = 1.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes from keypoints (N, J, 3) of the previous frame, in an image of ``image_size`` (w, h).

    Each person's box is the tight box around its joints scored at least ``min_score``, grown by
    ``enlarge`` about its centre and clipped to the image. A person with fewer than ``min_joints``
    such joints, or whose box leaves the image, gets none. Returns the boxes (M, 4) float32 and
    the index (M,) of the person each came from, to carry its track id along.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must have shape (N, J, 3), got {keypoints.shape}")
    if min_joints < 1:
        raise ValueError(f"min_joints must be >= 1, got {min_joints}")
    if enlarge < 1.0:
        raise ValueError(f"enlarge must be >= 1, got {enlarge}")
    confident = keypoints[..., 2] >= min_score
    x = np.where(confident, keypoints[..., 0], np.nan)
    y = np.where(confident, keypoints[..., 1], np.nan)
    enough = confident.sum(axis=1) >= min_joints
    width, height = image_size
    boxes = np.zeros((len(keypoints), 4))
    if enough.any():
        low = np.column_stack([np.nanmin(x[enough], axis=1), np.nanmin(y[enough], axis=1)])
        high = np.column_stack([np.nanmax(x[enough], axis=1), np.nanmax(y[enough], axis=1)])
        centre, half = (low + high) / 2, (high - low) / 2 * enlarge
        boxes[enough] = np.clip(np.hstack([centre - half, centre + half]), 0, [width, height, width, height])
    kept = enough & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[kept].astype(np.float32), np.flatnonzero(kept)


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
