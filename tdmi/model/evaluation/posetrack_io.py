"""PoseTrack 2018/21 sequence files read the way poseval (commit 4258a15) reads them.

poseval converts every file to the PoseTrack 2017 layout before it evaluates, and the
conversion decides what counts; this module keeps those decisions, so that our numbers are
poseval's numbers:

* a keypoint is missing only when x = y = v = 0 (a joint with v = 0 but a position counts);
* the ears are dropped: 15 joints are evaluated, in poseval's order (``POSEVAL_JOINTS``);
* predicted frames are paired with ground-truth frames by their position in ``images``;
* only frames whose ground truth has at least one annotation are evaluated;
* points inside a ground-truth frame's ignore regions are removed from the ground truth and the
  predictions, and a person left without points is removed (in frames that have ignore regions,
  a person who had no points at all goes too);
* joint scores come from ``scores`` (one per keypoint); without them every joint scores -9999.

Annotations join their image by ``image_id`` = the image's ``id`` (``frame_id`` when it has
none). ``is_labeled`` is not consulted, as poseval does not. Two differences, neither of which
changes a number on official files: a file is one sequence whatever its ``file_name`` folders
say (poseval groups frames by that folder and keeps the first group), and sequences go in name
order (poseval takes the file system's order, which can move its total AP when scores tie
across sequences).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdmi.model.joints import POSETRACK_15_ORDER, POSETRACK_17
from tdmi.model.jsonfile import read_json

__all__ = [
    "MISSING_SCORE",
    "POSEVAL_JOINTS",
    "EvalFrame",
    "EvalSequence",
    "ImageFilter",
    "People",
    "inside_polygon",
    "load_sequence_dirs",
    "prepare_sequence",
]

# poseval's joint ids (eval_helpers.Joint; it calls head_bottom "neck")
POSEVAL_JOINTS = POSETRACK_15_ORDER
NUM_JOINTS = len(POSEVAL_JOINTS)
MISSING_SCORE = -9999.0  # poseval's MIN_SCORE for predictions without scores
HEAD_SIZE_FACTOR = 0.6  # poseval: head size = 0.6 x the head box diagonal

ImageFilter = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, eq=False)
class People:
    """The people of one frame, joints in ``POSEVAL_JOINTS`` order."""

    xy: np.ndarray  # (P, 15, 2) float64 image pixels
    present: np.ndarray  # (P, 15) bool: the joint is there (not x = y = v = 0, not ignored)
    scores: np.ndarray  # (P, 15) float64
    track_ids: tuple[int | None, ...]
    head_sizes: np.ndarray  # (P,) float64, nan without ``bbox_head`` (ground truth only)

    def __len__(self) -> int:
        return len(self.track_ids)


@dataclass(frozen=True, eq=False)
class EvalFrame:
    """One evaluated frame: ground truth and predictions after poseval's clean-up."""

    index: int  # position in ``images``
    image: Mapping[str, Any]  # the ground truth's ``images`` entry
    gt: People
    pred: People


@dataclass(frozen=True, eq=False)
class EvalSequence:
    name: str
    frames: tuple[EvalFrame, ...]


@dataclass(frozen=True, eq=False)
class _Person:
    xy: np.ndarray
    present: np.ndarray
    scores: np.ndarray
    track_id: int | None
    head_size: float


def _keypoint_ids(data: Mapping[str, Any], where: str) -> list[int | None]:
    """Per keypoint slot of the file, its poseval joint id (None for the ears)."""
    names: Sequence[Any] = POSETRACK_17.joints
    categories = data.get("categories")
    if categories:
        if not isinstance(categories, list) or not isinstance(categories[0], Mapping):
            raise ValueError(f"{where}: 'categories' must be a list of objects")
        names = categories[0].get("keypoints") or names
    if len(names) not in (15, 17) or len(set(names)) != len(names):
        raise ValueError(f"{where}: expected 15 or 17 distinct keypoint names, got {list(names)}")
    missing = [n for n in POSEVAL_JOINTS if n not in names]
    if missing:
        raise ValueError(f"{where}: keypoint names lack {', '.join(missing)}")
    return [POSEVAL_JOINTS.index(n) if n in POSEVAL_JOINTS else None for n in names]


def _head_size(annotation: Mapping[str, Any], where: str) -> float:
    box = annotation.get("bbox_head")
    if box is None:
        return float("nan")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'bbox_head' must be four numbers [x, y, w, h]") from None
    # the corners first, as poseval's conversion stores them, then their difference
    return HEAD_SIZE_FACTOR * float(np.linalg.norm(np.subtract([x + w, y + h], [x, y])))


def _track_id(annotation: Mapping[str, Any], where: str) -> int | None:
    value = annotation.get("track_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ValueError(f"{where}: 'track_id' must be an integer, got {value!r}")
    return int(value)


def _person(annotation: Any, ids: list[int | None], where: str) -> _Person:
    if not isinstance(annotation, Mapping):
        raise ValueError(f"{where}: an annotation must be an object")
    try:
        values = np.asarray(annotation.get("keypoints") or [], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'keypoints' must be a flat list of numbers") from None
    if values.shape != (3 * len(ids),):
        raise ValueError(f"{where}: expected {3 * len(ids)} keypoint numbers, got {values.size}")
    try:
        raw_scores = np.asarray(annotation.get("scores") or [], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'scores' must be a list of numbers") from None
    if raw_scores.size and raw_scores.shape != (len(ids),):
        raise ValueError(f"{where}: expected {len(ids)} scores, got {raw_scores.size}")
    xy = np.zeros((NUM_JOINTS, 2))
    present = np.zeros(NUM_JOINTS, dtype=bool)
    scores = np.full(NUM_JOINTS, MISSING_SCORE)
    for slot, joint in enumerate(ids):
        x, y, v = values[3 * slot : 3 * slot + 3]
        if joint is None or (x == 0 and y == 0 and v == 0):
            continue
        xy[joint] = x, y
        present[joint] = True
        if raw_scores.size:
            scores[joint] = raw_scores[slot]
    return _Person(xy, present, scores, _track_id(annotation, where), _head_size(annotation, where))


def _frames(data: Any, where: str) -> list[tuple[Mapping[str, Any], list[_Person]]]:
    """The file's frames in ``images`` order, each with its people in ``annotations`` order."""
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise ValueError(f"{where}: not a PoseTrack sequence (no 'images' list)")
    annotations = data.get("annotations") or []
    if not isinstance(annotations, list):
        raise ValueError(f"{where}: 'annotations' must be a list")
    ids = _keypoint_ids(data, where)
    people: dict[Any, list[_Person]] = {}
    frames = []
    for k, image in enumerate(data["images"]):
        key = image.get("id", image.get("frame_id")) if isinstance(image, Mapping) else None
        if not isinstance(key, int | float | str):
            raise ValueError(f"{where}: image {k} has neither 'id' nor 'frame_id'")
        if key in people:
            raise ValueError(f"{where}: image id {key} appears twice in 'images'")
        people[key] = []
        frames.append((image, people[key]))
    for n, annotation in enumerate(annotations):
        place = f"{where}, annotation {n}"
        key = annotation.get("image_id") if isinstance(annotation, Mapping) else None
        if not isinstance(key, int | float | str) or key not in people:
            raise ValueError(f"{place}: image_id {key!r} is not in 'images'")
        people[key].append(_person(annotation, ids, place))
    return frames


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which points (N, 2) lie strictly inside a polygon (M, 2), as GEOS (shapely) decides.

    Even-odd ray crossing; a point on an edge or a vertex is not inside. Rings with fewer than
    three points contain nothing.
    """
    if len(polygon) < 3 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    p1 = polygon[None, :, :]
    p2 = np.roll(polygon, -1, axis=0)[None, :, :]
    px, py = points[:, 0:1], points[:, 1:2]
    x1, y1, x2, y2 = p1[..., 0], p1[..., 1], p2[..., 0], p2[..., 1]
    orient = np.sign((x2 - x1) * (py - y1) - (y2 - y1) * (px - x1))
    horizontal = (y1 == py) & (y2 == py)
    on_flat = horizontal & (np.minimum(x1, x2) <= px) & (px <= np.maximum(x1, x2))
    straddles = ((y1 > py) & (y2 <= py)) | ((y2 > py) & (y1 <= py))
    right_of = ~((x1 < px) & (x2 < px))
    on_edge = right_of & (((x2 == px) & (y2 == py)) | on_flat | (straddles & (orient == 0)))
    upward_orient = np.where(y2 < y1, -orient, orient)
    crossings = (right_of & straddles & (upward_orient > 0)).sum(axis=1)
    return (crossings % 2 == 1) & ~on_edge.any(axis=1)


def _ignore_polygons(image: Mapping[str, Any], where: str) -> list[np.ndarray] | None:
    """The frame's ignore regions; None when it has none (poseval then keeps point-less people)."""
    xs, ys = image.get("ignore_regions_x"), image.get("ignore_regions_y")
    if xs is None or ys is None:
        return None
    try:
        polygons = [np.column_stack([np.asarray(px, float), np.asarray(py, float)]) for px, py in zip(xs, ys)]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: ignore regions must be lists of numbers of equal length") from None
    return polygons or None


def _without_ignored(people: list[_Person], polygons: list[np.ndarray]) -> list[_Person]:
    kept = []
    for person in people:
        inside = np.zeros(NUM_JOINTS, dtype=bool)
        for polygon in polygons:
            inside |= inside_polygon(person.xy, polygon)
        present = person.present & ~inside
        if present.any():
            kept.append(_Person(person.xy, present, person.scores, person.track_id, person.head_size))
    return kept


def _stack(people: list[_Person]) -> People:
    return People(
        xy=np.array([p.xy for p in people]).reshape(len(people), NUM_JOINTS, 2),
        present=np.array([p.present for p in people], dtype=bool).reshape(len(people), NUM_JOINTS),
        scores=np.array([p.scores for p in people]).reshape(len(people), NUM_JOINTS),
        track_ids=tuple(p.track_id for p in people),
        head_sizes=np.array([p.head_size for p in people], dtype=np.float64),
    )


def _check_unique_tracks(frames: list[tuple[Mapping[str, Any], list[_Person]]], where: str) -> None:
    for k, (_, people) in enumerate(frames):
        ids = [p.track_id for p in people if p.track_id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{where}: image {k} has the same track_id on two people")


def prepare_sequence(name: str, gt: Any, pred: Any, image_filter: ImageFilter | None = None) -> EvalSequence:
    """Pair one sequence's ground truth and predictions frame by frame, cleaned as poseval does.

    ``image_filter(gt_image)`` may leave out labelled frames; they are then treated like
    unlabelled ones (for AP and for tracking alike).
    """
    gt_frames = _frames(gt, f"{name} (ground truth)")
    pred_frames = _frames(pred, f"{name} (predictions)")
    if len(pred_frames) != len(gt_frames):
        raise ValueError(
            f"{name}: predictions have {len(pred_frames)} images but the ground truth has {len(gt_frames)}"
            " (frames are paired by position in 'images')"
        )
    _check_unique_tracks(pred_frames, f"{name} (predictions)")
    frames = []
    for k, ((image, gt_people), (_, pred_people)) in enumerate(zip(gt_frames, pred_frames)):
        if not gt_people or (image_filter is not None and not image_filter(image)):
            continue
        polygons = _ignore_polygons(image, f"{name} (ground truth), image {k}")
        if polygons is not None:
            gt_people = _without_ignored(gt_people, polygons)
            pred_people = _without_ignored(pred_people, polygons)
        frames.append(EvalFrame(k, image, _stack(gt_people), _stack(pred_people)))
    return EvalSequence(name, tuple(frames))


def load_sequence_dirs(gt_dir: Path, pred_dir: Path) -> dict[str, tuple[Any, Any]]:
    """Read ``gt_dir/*.json`` and the same file names in ``pred_dir``, sorted by name."""
    for kind, folder in (("ground-truth", gt_dir), ("prediction", pred_dir)):
        if not folder.is_dir():
            raise ValueError(f"{kind} directory not found: {folder}")
    gt_names = {p.name for p in gt_dir.glob("*.json")}
    pred_names = {p.name for p in pred_dir.glob("*.json")}
    if not gt_names:
        raise ValueError(f"no .json files in the ground-truth directory {gt_dir}")
    if gt_names != pred_names:
        lacking, extra = sorted(gt_names - pred_names), sorted(pred_names - gt_names)
        detail = "; ".join(
            part
            for part in (
                f"no predictions for {', '.join(lacking)}" if lacking else "",
                f"no ground truth for {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise ValueError(f"sequence files of {gt_dir} and {pred_dir} differ: {detail}")
    return {Path(n).stem: (read_json(gt_dir / n), read_json(pred_dir / n)) for n in sorted(gt_names)}
