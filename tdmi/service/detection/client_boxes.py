"""Person boxes sent by a client for a frame: checked, clipped to the frame, or refused with a reason.

A client that already knows where the people are (its own detector, a manual selection) sends
``[[x1, y1, x2, y2], ...]`` or ``[[x1, y1, x2, y2, score], ...]`` in frame pixels. What cannot be a
person box is refused as a whole, naming the first bad box, so the client can fix its request.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from tdmi.service.detection.base import Detections

__all__ = ["MAX_CLIENT_BOXES", "InvalidBoxesError", "parse_client_boxes"]

MAX_CLIENT_BOXES = 256
_FORM = "[x1, y1, x2, y2] or [x1, y1, x2, y2, score]"


class InvalidBoxesError(ValueError):
    """Client boxes that cannot be used; the message says which box and why."""


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidBoxesError(f"{where} must hold numbers, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidBoxesError(f"{where} must hold finite numbers, got {value!r}")
    return number


def parse_client_boxes(
    raw: object, image_size: tuple[int, int], max_boxes: int = MAX_CLIENT_BOXES
) -> Detections:
    """Boxes for a frame of ``image_size`` (w, h) from a client's JSON value, clipped to the frame.

    Scores default to 1. Raises :class:`InvalidBoxesError` for anything that is not a list of
    boxes, a box without area, a score outside [0, 1], a box wholly outside the frame, or more
    than ``max_boxes`` boxes. An empty list is valid: nobody in this frame.
    """
    if not isinstance(raw, list | tuple):
        raise InvalidBoxesError(f"boxes must be a list of {_FORM}, got {type(raw).__name__}")
    if len(raw) > max_boxes:
        raise InvalidBoxesError(f"at most {max_boxes} boxes per frame, got {len(raw)}")
    width, height = image_size
    boxes, scores = [], []
    for index, entry in enumerate(raw):
        where = f"box {index}"
        if not isinstance(entry, list | tuple) or len(entry) not in (4, 5):
            raise InvalidBoxesError(f"{where} must be {_FORM}, got {entry!r}")
        x1, y1, x2, y2, *rest = (_number(value, where) for value in entry)
        if x2 <= x1 or y2 <= y1:
            raise InvalidBoxesError(f"{where} {list(entry)} has no area: need x2 > x1 and y2 > y1")
        score = rest[0] if rest else 1.0
        if not 0.0 <= score <= 1.0:
            raise InvalidBoxesError(f"{where} has score {score}, outside [0, 1]")
        clipped = [min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
        clipped += [min(max(x2, 0.0), width), min(max(y2, 0.0), height)]
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            raise InvalidBoxesError(f"{where} {list(entry)} lies entirely outside the {width}x{height} frame")
        boxes.append(clipped)
        scores.append(score)
    if not boxes:
        return Detections.empty()
    return Detections(np.array(boxes), np.array(scores))
