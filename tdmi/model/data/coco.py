"""COCO person keypoints (``person_keypoints_*.json``): single images as one-frame records.

Boxes are cleaned as HRNet does for COCO: clipped to the image, dropped when empty. Crowd
annotations are skipped (they mark regions, not people).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tdmi.model.data.detections import PERSON_CATEGORY
from tdmi.model.data.posetrack import Frame, Person, read_keypoints, xywh_to_xyxy
from tdmi.model.jsonfile import read_json

__all__ = ["load_coco_keypoints"]


def _clipped_box(bbox: list[float], width: float, height: float) -> np.ndarray | None:
    x1, y1, x2, y2 = xywh_to_xyxy(bbox)
    box = np.array([max(x1, 0), max(y1, 0), min(x2, width - 1), min(y2, height - 1)], dtype=np.float32)
    return box if box[2] > box[0] and box[3] > box[1] else None


def load_coco_keypoints(path: Path | str) -> list[Frame]:
    """Every image of a COCO keypoints file (file order) with its non-crowd people."""
    path = Path(path)
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a COCO annotation file, no 'images' list")
    try:
        images = {int(image["id"]): image for image in data["images"]}
        people: dict[int, list[Person]] = {image_id: [] for image_id in images}
        for n, ann in enumerate(data.get("annotations") or []):
            if ann.get("iscrowd") or ann.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
                continue
            image = images.get(int(ann["image_id"]))
            if image is None:
                raise ValueError(f"{path}: annotation {n} refers to image_id {ann['image_id']}, not an image")
            box = _clipped_box(ann["bbox"], float(image["width"]), float(image["height"]))
            if box is not None:
                keypoints = read_keypoints(ann.get("keypoints"), f"{path}: annotation {n}")
                people[int(image["id"])].append(Person(keypoints, box, -1))
        return [
            Frame(image_id, str(image["file_name"]), True, tuple(people[image_id]), (), image)
            for image_id, image in images.items()
        ]
    except KeyError as exc:
        raise ValueError(f"{path}: an entry has no {exc.args[0]!r}") from None
