"""A person's box from the keypoints already found: between two frames a person moves little, so a
box around the joints the pose model was confident about, enlarged for the head top, the feet and
the motion, finds them again."""

from __future__ import annotations

import numpy as np

__all__ = ["boxes_from_keypoints"]


def boxes_from_keypoints(
    keypoints: np.ndarray,
    image_size: tuple[float, float],
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
