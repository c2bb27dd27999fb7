"""PoseTrack 2017 ('annolist') annotation files -> PoseTrack 2018 per-video JSON.

PoseTrack 2017 stores every value in a one-element list and numbers its 15 joints 0..14
(right ankle, right knee, right hip, left hip, left knee, left ankle, right wrist, right elbow,
right shoulder, left shoulder, left elbow, left wrist, head bottom ("neck" in poseval), nose,
head top). The 2018 format puts them into 17 COCO-ordered slots, leaving the ears empty. The
conversion follows the official one (poseval's ``convert.py``): image ids are
``T SSSSSS FFFF`` (source type 1 mpii / 2 bonn / 3 mpiinew, the video number, the frame
number), person ids are ``image_id * 100 + n``, and a person's ``bbox`` is the extent of its
joints grown 1.3x. One deliberate difference: every annotated joint gets v = 1, because in the
2018 format v only says whether a joint is annotated (official files never hold v = 0 for an
annotated joint), whereas poseval copies 2017's ``is_visible`` and so would drop occluded joints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tdmi.model.data.posetrack import NUM_KEYPOINTS, keypoint_box
from tdmi.model.joints import POSETRACK_15_ORDER, POSETRACK_17
from tdmi.model.jsonfile import read_json

__all__ = [
    "POSETRACK17_JOINTS",
    "PT17_TO_SLOT",
    "convert_annolist",
    "convert_posetrack17",
    "posetrack_image_id",
]

POSETRACK17_JOINTS = POSETRACK_15_ORDER
PT17_TO_SLOT = tuple(POSETRACK_17.joints.index(name) for name in POSETRACK17_JOINTS)
_SOURCE_TYPES = {"mpii": 1, "bonn": 2, "mpiinew": 3}
_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]  # fmt: skip


def posetrack_image_id(image_name: str) -> int:
    """The official image id of a 2017 image path such as ``images/bonn/000001_bonn/00042.jpg``."""
    path = PurePosixPath(image_name.replace("\\", "/"))
    video, _, kind = path.parent.name.partition("_")
    kind = kind.split("_")[0]
    frame = path.stem.split("_")[0]
    if not (video.isdigit() and kind in _SOURCE_TYPES and frame.isdigit() and int(frame) < 10_000):
        raise ValueError(
            f"image {image_name!r}: expected <video number>_<mpii|bonn|mpiinew>/<frame number>.<ext>"
        )
    return _SOURCE_TYPES[kind] * 10_000_000_000 + int(video) * 10_000 + int(frame)


def _first(entry: Mapping[str, Any], key: str, where: str) -> Any:
    """2017 files wrap each value in a one-element list."""
    value = entry.get(key) if isinstance(entry, Mapping) else None
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        raise ValueError(f"{where}: no {key!r}")
    return value


def _keypoints(rect: Mapping[str, Any], where: str) -> np.ndarray:
    keypoints = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float64)
    annopoints = rect.get("annopoints") or []
    points = (annopoints[0].get("point") or []) if annopoints else []
    for point in points:
        joint = int(_first(point, "id", where))
        if not 0 <= joint < len(PT17_TO_SLOT):
            raise ValueError(f"{where}: joint id {joint} is not a PoseTrack 2017 joint (0..14)")
        x, y = float(_first(point, "x", where)), float(_first(point, "y", where))
        keypoints[PT17_TO_SLOT[joint]] = (x, y, 1)
    return keypoints


def _person(rect: Mapping[str, Any], image_id: int, n: int, where: str) -> dict[str, Any]:
    keypoints = _keypoints(rect, where)
    person: dict[str, Any] = {
        "track_id": int(_first(rect, "track_id", where)),
        "category_id": 1,
        "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(keypoints.ravel())],
        "scores": [],
        "image_id": image_id,
        "id": image_id * 100 + n,
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
    }
    box = keypoint_box(keypoints.astype(np.float32))
    if box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
        person["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    if all(k in rect for k in ("x1", "y1", "x2", "y2")):
        x1, y1, x2, y2 = (float(_first(rect, k, where)) for k in ("x1", "y1", "x2", "y2"))
        person["bbox_head"] = [x1, y1, x2 - x1, y2 - y1]
    return person


def _ignore_regions(entry: Mapping[str, Any], where: str) -> tuple[list[list[float]], list[list[float]]]:
    xs, ys = [], []
    for region in entry.get("ignore_regions") or []:
        points = region.get("point") or []
        xs.append([float(_first(p, "x", where)) for p in points])
        ys.append([float(_first(p, "y", where)) for p in points])
    return xs, ys


def convert_annolist(data: Mapping[str, Any], where: str = "annolist") -> dict[str, Any]:
    """One PoseTrack 2017 video (``{"annolist": [...]}``) -> one PoseTrack 2018 video dict."""
    if not isinstance(data, Mapping) or not isinstance(data.get("annolist"), list):
        raise ValueError(f"{where}: not a PoseTrack 2017 file (no 'annolist' list)")
    annolist = data["annolist"]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, entry in enumerate(annolist):
        at = f"{where}: annolist[{n}]"
        image = entry.get("image") if isinstance(entry, Mapping) else None
        name = str(_first(image[0] if image else {}, "name", at))
        image_id = posetrack_image_id(name)
        rects = entry.get("annorect") or []
        people = [_person(rect, image_id, k, f"{at}: annorect[{k}]") for k, rect in enumerate(rects)]
        labelled = entry.get("is_labeled")
        record: dict[str, Any] = {
            "file_name": name,
            "has_no_densepose": True,
            "is_labeled": bool(labelled[0] if isinstance(labelled, list) and labelled else people),
            "frame_id": image_id,
            "vid_id": name.replace("\\", "/").split("/")[-2].split("_")[0],
            "nframes": len(annolist),
            "id": image_id,
        }
        xs, ys = _ignore_regions(entry, at)
        if xs:
            record["ignore_regions_x"], record["ignore_regions_y"] = xs, ys
        images.append(record)
        annotations.extend(people)
    category = {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(POSETRACK_17.joints),
        "skeleton": _SKELETON,
    }
    return {"images": images, "annotations": annotations, "categories": [category]}


def convert_posetrack17(src: Path | str, out: Path | str) -> dict[Path, dict[str, Any]]:
    """Convert every ``*.json`` of ``src`` into ``out`` (same file names): written path -> content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"PoseTrack 2017 annotation directory not found: {src}")
    paths = sorted(src.glob("*.json"))
    if not paths:
        raise ValueError(f"{src}: no *.json annotation files")
    if out.resolve() == src.resolve():
        raise ValueError(f"--out must differ from --src ({src}): the 2017 files would be overwritten")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for path in paths:
        data = read_json(path, "PoseTrack 2017 annotation file")
        converted = convert_annolist(data, str(path))
        (out / path.name).write_text(json.dumps(converted))
        written[out / path.name] = converted
    return written
