"""Which frames make up the clip of a key frame: one rule for training, evaluation and serving.

TDMI reads frames t-d .. t+d. A neighbour that does not exist (before the first frame, after
the last, or beyond what a live feed has delivered) is replaced by the key frame itself, as
DCPose and FAMI-Pose do, so the model always sees 2d+1 frames.
"""

from __future__ import annotations

__all__ = ["clip_indices"]


def clip_indices(key: int, num_frames: int | None, radius: int, lookahead: int | None = None) -> list[int]:
    """Frame indices t-d .. t+d for key frame ``key``, missing neighbours replaced by ``key``.

    ``num_frames`` is the length of the video (None for a live feed of unknown length);
    ``lookahead`` (0..radius) caps how many future frames may be used, for low-latency live mode.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if num_frames is not None and not 0 <= key < num_frames:
        raise ValueError(f"key frame {key} outside a video of {num_frames} frames")
    ahead = radius if lookahead is None else max(0, min(lookahead, radius))
    last = key + ahead if num_frames is None else min(key + ahead, num_frames - 1)
    return [t if 0 <= t <= last else key for t in range(key - radius, key + radius + 1)]
