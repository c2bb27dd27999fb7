"""Person detections for top-down evaluation: a COCO / PoseTrack result file.

The file is a JSON list of ``{image_id, bbox: [x, y, w, h], score, category_id}``. Boxes below
a score threshold are dropped; 0.2 is the threshold the PoseTrack papers (DCPose, TDMI) use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdmi.model.data.posetrack import xywh_to_xyxy
from tdmi.model.jsonfile import read_json

__all__ = ["DEFAULT_SCORE_THRESHOLD", "PERSON_CATEGORY", "Detection", "read_detections"]

DEFAULT_SCORE_THRESHOLD = 0.2
PERSON_CATEGORY = 1


@dataclass(frozen=True, eq=False)
class Detection:
    """One person box: ``box`` (4,) float32 xyxy image pixels."""

    image_id: int
    box: np.ndarray
    score: float


def _detection(entry: Any, n: int, path: Path) -> Detection:
    if not isinstance(entry, dict) or not all(k in entry for k in ("image_id", "bbox", "score")):
        raise ValueError(f"{path}: entry {n} needs image_id, bbox and score")
    bbox = entry["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ValueError(f"{path}: entry {n} has bbox {bbox!r}, expected [x, y, w, h]")
    return Detection(int(entry["image_id"]), xywh_to_xyxy(bbox), float(entry["score"]))


def read_detections(
    path: Path | str, score_threshold: float = DEFAULT_SCORE_THRESHOLD
) -> dict[int, list[Detection]]:
    """Person boxes with score >= ``score_threshold``, by image id, best first.

    Entries of another ``category_id`` are skipped; an entry without one counts as a person.
    """
    path = Path(path)
    entries = read_json(path, "detections file")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of detections")
    by_image: dict[int, list[Detection]] = {}
    for n, entry in enumerate(entries):
        detection = _detection(entry, n, path)
        if entry.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY or detection.score < score_threshold:
            continue
        by_image.setdefault(detection.image_id, []).append(detection)
    for boxes in by_image.values():
        boxes.sort(key=lambda d: -d.score)
    return by_image
