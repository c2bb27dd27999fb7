"""PoseTrack 2018 / PoseTrack21 annotations: one JSON file per video, read into typed records.

The official format is COCO-like: ``images`` (one entry per frame, in temporal order, with
``is_labeled`` and ignore-region polygons) and ``annotations`` (17 keypoints as x, y, v with
v > 0 marking an annotated joint, ``bbox`` [x, y, w, h], ``track_id``). Each image's JSON object
is kept as it was read (``Frame.record``), so predictions can be written back with the very
same ``images`` list the official evaluation expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdmi.model.jsonfile import read_json

__all__ = [
    "NUM_KEYPOINTS",
    "Frame",
    "Person",
    "Sequence",
    "keypoint_box",
    "load_sequence",
    "load_sequences",
    "read_keypoints",
    "xywh_to_xyxy",
]

NUM_KEYPOINTS = 17
# PoseTrack's own rule (poseval) for a person box made from keypoints: their extent, 1.3x
KEYPOINT_BOX_ENLARGE = 1.3


@dataclass(frozen=True, eq=False)
class Person:
    """One annotated person in one frame. ``keypoints`` (17, 3) float32 hold x, y, v."""

    keypoints: np.ndarray
    box: np.ndarray | None  # (4,) float32 xyxy image pixels; None when neither bbox nor joints exist
    track_id: int  # -1 when the annotation has none

    @property
    def num_labelled(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass(frozen=True, eq=False)
class Frame:
    """One image of a video (or a single COCO image) with its people."""

    image_id: int
    file_name: str  # relative to the dataset root
    is_labeled: bool
    people: tuple[Person, ...]
    ignore_regions: tuple[np.ndarray, ...]  # polygons, each (N, 2) float32 x, y
    record: Mapping[str, Any]  # the image's JSON object as read


@dataclass(frozen=True, eq=False)
class Sequence:
    """One video: its frames in file order (temporal order in the official files)."""

    name: str  # the annotation file's stem, e.g. "009473_mpii_test"
    images: tuple[Frame, ...]
    categories: tuple[Mapping[str, Any], ...]

    @property
    def num_people(self) -> int:
        return sum(len(frame.people) for frame in self.images)


def xywh_to_xyxy(box: Any) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def keypoint_box(keypoints: np.ndarray) -> np.ndarray | None:
    """Box around the annotated joints, grown 1.3x about its centre; None without joints."""
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    if len(labelled) == 0:
        return None
    low, high = labelled.min(axis=0), labelled.max(axis=0)
    centre, half = (low + high) / 2, (high - low) / 2 * KEYPOINT_BOX_ENLARGE
    return np.concatenate([centre - half, centre + half]).astype(np.float32)


def read_keypoints(values: Any, where: str) -> np.ndarray:
    """A flat [x1, y1, v1, ...] list of 17 joints -> (17, 3) float32; none (a box only) -> zeros."""
    if not values:
        return np.zeros((NUM_KEYPOINTS, 3), np.float32)
    points = np.asarray(values, dtype=np.float32)
    if points.shape != (NUM_KEYPOINTS * 3,):
        raise ValueError(f"{where}: expected {NUM_KEYPOINTS * 3} keypoint values, got {points.size}")
    return points.reshape(NUM_KEYPOINTS, 3)


def _field(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(entry, Mapping) or key not in entry:
        raise ValueError(f"{where}: no {key!r}")
    return entry[key]


def _person(annotation: Mapping[str, Any], where: str) -> Person:
    keypoints = read_keypoints(annotation.get("keypoints"), where)
    bbox = annotation.get("bbox")
    box = xywh_to_xyxy(bbox) if bbox is not None and len(bbox) == 4 else keypoint_box(keypoints)
    track_id = annotation.get("track_id")
    return Person(keypoints, box, -1 if track_id is None else int(track_id))


def _ignore_regions(image: Mapping[str, Any], where: str) -> tuple[np.ndarray, ...]:
    xs, ys = image.get("ignore_regions_x") or [], image.get("ignore_regions_y") or []
    if len(xs) != len(ys):
        raise ValueError(f"{where}: {len(xs)} ignore_regions_x polygons but {len(ys)} ignore_regions_y")
    regions = []
    for px, py in zip(xs, ys):
        if len(px) != len(py):
            raise ValueError(f"{where}: an ignore region has {len(px)} x but {len(py)} y coordinates")
        if px:
            regions.append(np.stack([px, py], axis=1).astype(np.float32))
    return tuple(regions)


def load_sequence(path: Path | str) -> Sequence:
    """Read one per-video PoseTrack 2018 / PoseTrack21 annotation file."""
    path = Path(path)
    data = read_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        hint = (
            " (PoseTrack 2017 'annolist' format: run `tdmi convert posetrack17` first)"
            if (isinstance(data, dict) and "annolist" in data)
            else ""
        )
        raise ValueError(f"{path}: not a PoseTrack 2018 annotation file, no 'images' list{hint}")
    ids = [int(_field(image, "id", f"{path}: image {n}")) for n, image in enumerate(data["images"])]
    people: dict[int, list[Person]] = {image_id: [] for image_id in ids}
    for n, annotation in enumerate(data.get("annotations") or []):
        image_id = int(_field(annotation, "image_id", f"{path}: annotation {n}"))
        if image_id not in people:
            raise ValueError(f"{path}: annotation {n} refers to image_id {image_id}, not in 'images'")
        people[image_id].append(_person(annotation, f"{path}: annotation {n}"))
    frames = []
    for image_id, image in zip(ids, data["images"]):
        where = f"{path}: image {image_id}"
        file_name = _field(image, "file_name", where)
        labelled = image.get("is_labeled", bool(people[image_id]))
        frames.append(
            Frame(
                image_id=image_id,
                file_name=str(file_name),
                is_labeled=bool(labelled),
                people=tuple(people[image_id]),
                ignore_regions=_ignore_regions(image, where),
                record=image,
            )
        )
    return Sequence(path.stem, tuple(frames), tuple(data.get("categories") or ()))


def load_sequences(directory: Path | str) -> list[Sequence]:
    """Every ``*.json`` of a directory of per-video files, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"annotation directory not found: {directory}")
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ValueError(f"{directory}: no *.json annotation files")
    return [load_sequence(p) for p in paths]
