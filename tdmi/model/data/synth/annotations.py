"""PoseTrack 2018 per-sequence JSON for synthetic videos, field for field as the official files.

Ids follow the official scheme: a video number ``vid_id`` (six digits or more), image id
``int("1" + vid_id + "%04d" % frame)`` (also the ``frame_id``), annotation id
``image_id * 100 + track_id``. Ears are always ``0, 0, 0``; every other joint inside the frame
has visibility 1 (hidden ones too, as PoseTrack annotators label them) and joints outside are
``0, 0, 0``. Boxes are the labelled joints' extent grown 1.3 times about its centre, as the
official ground-truth boxes are.
"""

from __future__ import annotations

import numpy as np

from tdmi.model.joints import POSETRACK_17

__all__ = [
    "BOX_GROWTH",
    "CATEGORIES",
    "image_entry",
    "image_id",
    "person_annotation",
    "sequence_name",
    "video_number",
]

BOX_GROWTH = 1.3
MAX_VIDEOS_PER_SEED = 100_000
_MIN_EXTENT_PX = 4.0

# the official files' skeleton: COCO's, 1-based, ear edges included
_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
# the category block of the official files
CATEGORIES = [
    {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(POSETRACK_17.joints),
        "skeleton": [list(edge) for edge in _SKELETON],
    }
]


def video_number(seed: int, index: int) -> str:
    """The ``vid_id`` of video ``index`` made with ``seed``: distinct across seeds, six digits or more."""
    return f"{seed * MAX_VIDEOS_PER_SEED + index:06d}"


def sequence_name(seed: int, index: int) -> str:
    return f"synth_{video_number(seed, index)}"


def image_id(vid_id: str, frame: int) -> int:
    return int(f"1{vid_id}{frame:04d}")


def image_entry(
    split: str,
    sequence: str,
    vid_id: str,
    frame: int,
    num_frames: int,
    size: tuple[int, int],
    occluded: bool,
    blurred: bool,
    motion_blur_px: float = 0.0,
    defocus_px: float = 0.0,
) -> dict:
    """The ``images`` item of one frame; ``synthetic`` carries what the renderer knows."""
    ident = image_id(vid_id, frame)
    return {
        "has_no_densepose": True,
        "is_labeled": True,
        "file_name": f"images/{split}/{sequence}/{frame:06d}.jpg",
        "nframes": num_frames,
        "frame_id": ident,
        "vid_id": vid_id,
        "id": ident,
        "width": size[0],
        "height": size[1],
        "ignore_regions_x": [],
        "ignore_regions_y": [],
        "synthetic": {
            "occluded": occluded,
            "blurred": blurred,
            "motion_blur_px": _round(motion_blur_px),
            "defocus_px": _round(defocus_px),
        },
    }


def _round(v: float) -> float:
    return round(float(v), 2)


def person_annotation(
    image: int,
    track_id: int,
    keypoints: np.ndarray,
    labelled: np.ndarray,
    occluded: np.ndarray,
    head_box: np.ndarray,
) -> dict:
    """The ``annotations`` item of one person in one frame (``labelled`` must not be all False).

    ``keypoints`` (17, 2) pixels; ``labelled`` and ``occluded`` (17,) bool; ``head_box`` x, y, w, h.
    """
    flat: list[float] = []
    for (x, y), on in zip(keypoints, labelled):
        flat += [_round(x), _round(y), 1] if on else [0, 0, 0]
    points = keypoints[labelled]
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2
    size = np.maximum(hi - lo, _MIN_EXTENT_PX) * BOX_GROWTH
    return {
        "bbox_head": [round(float(v)) for v in head_box],
        "keypoints": flat,
        "track_id": track_id,
        "image_id": image,
        "bbox": [
            _round(centre[0] - size[0] / 2),
            _round(centre[1] - size[1] / 2),
            _round(size[0]),
            _round(size[1]),
        ],
        "scores": [],
        "category_id": 1,
        "id": image * 100 + track_id,
        "iscrowd": False,
        "num_keypoints": int(labelled.sum()),
        "occluded_joints": [int(j) for j in np.flatnonzero(occluded & labelled)],
    }
