"""Prediction files smoothed along their tracks, as the service's ``smoothing`` setting would.

``tdmi eval posetrack --one-euro MIN_CUTOFF BETA`` scores predictions after the same One Euro
filter (``tdmi.model.smoothing``) the service applies to a stream's tracks, so the filter's
trade (jitter against AP) is measured offline on any prediction files. Frame k of a sequence
(its position in ``images``) is at k / fps seconds. Joints a prediction lacks (x = y = v = 0)
stay absent; every prediction needs a ``track_id``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from tdmi.model.smoothing import OneEuroParams, PoseSmoother

__all__ = ["smooth_sequence"]


def smooth_sequence(data: Mapping[str, Any], params: OneEuroParams, fps: float) -> dict[str, Any]:
    """A copy of one predicted sequence dict with each track's keypoints filtered in frame order."""
    out = copy.deepcopy(dict(data))
    position = {}
    for k, image in enumerate(out.get("images") or []):
        position[image.get("id", image.get("frame_id"))] = k
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for annotation in out.get("annotations") or []:
        if annotation.get("track_id") is None:
            raise ValueError("smoothing needs a track_id on every prediction")
        by_frame.setdefault(position[annotation["image_id"]], []).append(annotation)
    smoother = PoseSmoother(params)
    for k in range(len(position)):
        people = by_frame.get(k, [])
        if not people:  # nobody: every track is lost
            smoother([], np.zeros((0, 1, 3)), k / fps)
            continue
        points = np.array([p["keypoints"] for p in people], dtype=np.float64).reshape(len(people), -1, 3)
        smoothed = smoother([p["track_id"] for p in people], points, k / fps)
        missing = (points == 0).all(axis=-1)
        smoothed[missing] = 0.0
        for person, values in zip(people, smoothed):
            person["keypoints"] = values.reshape(-1).tolist()
    return out
