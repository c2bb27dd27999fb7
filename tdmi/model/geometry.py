"""Crop geometry shared by training, evaluation and serving.

A person's box becomes a crop of fixed aspect ratio (the model input's), enlarged by 1.25, and
one 2x3 affine maps image pixels to crop pixels. Keypoints decoded in heatmap pixels go back to
the image through the inverse of the same affine, scaled to the heatmap size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CropBox", "apply_affine", "box_to_crop", "crop_affine", "invert_affine"]

BOX_ENLARGE = 1.25


@dataclass(frozen=True)
class CropBox:
    """Centre (x, y) and size (w, h) of a crop in image pixels."""

    cx: float
    cy: float
    width: float
    height: float


def box_to_crop(
    box_xyxy: tuple[float, float, float, float] | np.ndarray,
    aspect_ratio: float,
    enlarge: float = BOX_ENLARGE,
) -> CropBox:
    """Grow a box to ``aspect_ratio`` (width / height) around its centre, then by ``enlarge``."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return CropBox((x1 + x2) / 2, (y1 + y2) / 2, w * enlarge, h * enlarge)


def crop_affine(
    crop: CropBox,
    output_size: tuple[int, int],
    rotation_deg: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """2x3 matrix mapping image pixels into an ``output_size`` (w, h) crop.

    ``scale`` > 1 shows more of the image (a zoom out); ``rotation_deg`` turns the person
    counter-clockwise in the crop. Used for augmentation as well as for plain crops.
    """
    out_w, out_h = output_size
    s = out_w / (crop.width * scale)
    a = math.radians(rotation_deg)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    # rotate and scale about the crop centre, then move that centre to the output's centre
    linear = np.array([[cos, sin], [-sin, cos]])
    centre = np.array([crop.cx, crop.cy])
    shift = np.array([out_w / 2, out_h / 2]) - linear @ centre
    return np.concatenate([linear, shift[:, None]], axis=1)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
