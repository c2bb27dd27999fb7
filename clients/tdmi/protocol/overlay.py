"""Drawing pose results on a frame: boxes, "id N" labels, skeleton lines and joints (OpenCV + NumPy).

Shared by the server (overlay videos) and clients (live previews). OpenCV is imported when a
frame is drawn (``tdmi.protocol.media``): the SDK installed without its ``media`` extra still imports this.
A person is any object or dict with ``track_id``, ``box`` ``[x1, y1, x2, y2]`` and ``keypoints``
``[[x, y, score], ...]`` (either may be missing or None). Colours are RGB, as the frames are.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tdmi.protocol.media import require

__all__ = ["DEFAULT_SCORE_THRESHOLD", "draw_poses", "track_color"]

# joints scoring below this are not drawn: the server's TDMI_OVERLAY_SCORE_THRESHOLD and
# tdmi-client's --score-threshold change it
DEFAULT_SCORE_THRESHOLD = 0.3

_GOLDEN_RATIO = (math.sqrt(5) - 1) / 2
_NO_TRACK_COLOR = (200, 200, 200)
_LABEL_TEXT_COLOR = (0, 0, 0)


def track_color(track_id: int | None) -> tuple[int, int, int]:
    """A bright RGB colour fixed per track id; consecutive ids get far-apart hues (golden-ratio steps)."""
    if track_id is None:
        return _NO_TRACK_COLOR
    hue = (track_id * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_poses(
    image: np.ndarray,
    persons: Iterable[Any],
    skeleton: Sequence[tuple[int, int]],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    *,
    inplace: bool = False,
) -> np.ndarray:
    """Draw every person on an RGB uint8 (H, W, 3) frame and return it (a copy unless ``inplace``).

    Joints scoring below ``score_threshold``, and the skeleton lines touching them, are left out.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    cv2 = require("cv2", "drawing poses")
    canvas = image if inplace else image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 240))
    for person in persons:
        color = track_color(_field(person, "track_id"))
        box = _field(person, "box")
        if box is not None:
            _draw_box(cv2, canvas, box, color, thickness, _field(person, "track_id"))
        keypoints = _field(person, "keypoints")
        if keypoints is not None:
            _draw_skeleton(cv2, canvas, keypoints, skeleton, score_threshold, color, thickness)
    return canvas


def _field(person: Any, name: str) -> Any:
    return person.get(name) if isinstance(person, Mapping) else getattr(person, name, None)


def _draw_box(
    cv2: ModuleType,
    canvas: np.ndarray,
    box: Sequence[float],
    color: tuple[int, int, int],
    thickness: int,
    track_id: int | None,
) -> None:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
    if track_id is None:
        return
    label = f"id {track_id}"
    scale = 0.4 * thickness
    (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(0, y1 - text_h - baseline - 2)  # above the box, or inside it at the top edge of the frame
    cv2.rectangle(canvas, (x1, top), (x1 + text_w + 2, top + text_h + baseline + 2), color, cv2.FILLED)
    cv2.putText(
        canvas, label, (x1 + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, _LABEL_TEXT_COLOR,
        thickness, cv2.LINE_AA,
    )  # fmt: skip


def _draw_skeleton(
    cv2: ModuleType,
    canvas: np.ndarray,
    keypoints: Sequence[Sequence[float]],
    skeleton: Sequence[tuple[int, int]],
    score_threshold: float,
    color: tuple[int, int, int],
    thickness: int,
) -> None:
    points: list[tuple[int, int] | None] = [
        (round(x), round(y)) if score >= score_threshold and math.isfinite(x) and math.isfinite(y) else None
        for x, y, score in ((float(k[0]), float(k[1]), float(k[2])) for k in keypoints)
    ]
    if any(max(edge) >= len(points) for edge in skeleton):
        raise ValueError(f"skeleton refers to joints beyond the {len(points)} keypoints given")
    for a, b in skeleton:
        start, end = points[a], points[b]
        if start is not None and end is not None:
            cv2.line(canvas, start, end, color, thickness, cv2.LINE_AA)
    for point in points:
        if point is not None:
            cv2.circle(canvas, point, thickness + 2, color, cv2.FILLED, cv2.LINE_AA)
