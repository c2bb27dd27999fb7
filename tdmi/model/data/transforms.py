"""Training augmentation and the one affine warp that turns a clip into model input.

Every frame of a clip goes through the same 2x3 matrix (image pixels -> input pixels), built
from the key frame's person box: crop (1.25x, the input's aspect ratio), random scale and
rotation, half-body crops and a horizontal flip, as HRNet and TDMI train. The flip is folded
into that matrix (x -> width - 1 - x, then the crop of the mirrored centre), so a clip costs one
``cv2.warpAffine`` per frame and the matrix alone maps keypoints and predictions both ways;
what a flip adds is the swap of left and right joints (``crop_keypoints``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tdmi.model.geometry import CropBox, apply_affine, box_to_crop, crop_affine
from tdmi.model.joints import JointLayout

__all__ = [
    "HALF_BODY_ENLARGE",
    "AugmentConfig",
    "Augmentation",
    "choose_crop",
    "clip_affine",
    "crop_keypoints",
    "flip_affine",
    "half_body_box",
    "lower_body_joints",
    "sample_augmentation",
    "warp_clip",
]

HALF_BODY_ENLARGE = 1.5  # HRNet grows half-body boxes 1.5x instead of 1.25x
_LOWER_BODY = ("hip", "knee", "ankle")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges of the paper (and HRNet's probabilities)."""

    max_rotation_deg: float = 45.0  # uniform in [-max, max] ...
    rotation_prob: float = 0.6  # ... applied this often, otherwise 0
    scale_range: tuple[float, float] = (0.65, 1.35)  # uniform; > 1 shows more around the person
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8  # labelled joints a person needs before a half-body crop


@dataclass(frozen=True)
class Augmentation:
    """One draw of the parameters, shared by every frame of a clip."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    flip: bool = False


def sample_augmentation(config: AugmentConfig, rng: np.random.Generator) -> Augmentation:
    rotate = rng.random() < config.rotation_prob
    rotation = float(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)) if rotate else 0.0
    scale = float(rng.uniform(*config.scale_range))
    return Augmentation(rotation, scale, bool(rng.random() < config.flip_prob))


def lower_body_joints(layout: JointLayout) -> np.ndarray:
    """Boolean mask of hips, knees and ankles; everything else is upper body."""
    return np.array([any(part in name for part in _LOWER_BODY) for name in layout.joints])


def half_body_box(keypoints: np.ndarray, layout: JointLayout, rng: np.random.Generator) -> np.ndarray | None:
    """Box (xyxy) around the labelled upper or lower body joints, centred on their mean.

    Upper or lower is a coin flip; a half with fewer than 3 labelled joints gives way to the
    other; None when the chosen half has fewer than 2 (as HRNet).
    """
    labelled = keypoints[:, 2] > 0
    lower = lower_body_joints(layout)
    halves = [labelled & ~lower, labelled & lower]
    if rng.random() >= 0.5:
        halves.reverse()
    chosen = halves[0] if halves[0].sum() > 2 else halves[1]
    if chosen.sum() < 2:
        return None
    points = keypoints[chosen, :2]
    centre, half = points.mean(axis=0), (points.max(axis=0) - points.min(axis=0)) / 2
    return np.concatenate([centre - half, centre + half]).astype(np.float32)


def choose_crop(
    box: np.ndarray,
    keypoints: np.ndarray,
    layout: JointLayout,
    aspect_ratio: float,
    config: AugmentConfig,
    rng: np.random.Generator,
) -> CropBox:
    """A training crop: from the person's box, or (sometimes) from half of its joints."""
    enough = int((keypoints[:, 2] > 0).sum()) >= config.half_body_min_joints
    if enough and rng.random() < config.half_body_prob:
        half = half_body_box(keypoints, layout, rng)
        if half is not None:
            return box_to_crop(half, aspect_ratio, enlarge=HALF_BODY_ENLARGE)
    return box_to_crop(box, aspect_ratio)


def flip_affine(image_width: int) -> np.ndarray:
    """2x3 mirror of an image of this width: x -> width - 1 - x (pixel centres at integers)."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]])


def clip_affine(
    crop: CropBox, input_size: tuple[int, int], image_width: int, augmentation: Augmentation | None = None
) -> np.ndarray:
    """The 2x3 matrix image pixels -> input pixels for ``input_size`` (h, w), flip included."""
    aug = augmentation or Augmentation()
    h, w = input_size
    if not aug.flip:
        return crop_affine(crop, (w, h), aug.rotation_deg, aug.scale)
    mirrored = CropBox(image_width - 1.0 - crop.cx, crop.cy, crop.width, crop.height)
    matrix = crop_affine(mirrored, (w, h), aug.rotation_deg, aug.scale)
    flip = flip_affine(image_width)
    return np.concatenate([matrix[:, :2] @ flip[:, :2], matrix[:, :2] @ flip[:, 2:] + matrix[:, 2:]], axis=1)


def crop_keypoints(
    keypoints: np.ndarray, affine: np.ndarray, flipped: bool, layout: JointLayout
) -> np.ndarray:
    """(J, 3) image keypoints -> input pixels; after a flip, left and right joints swap slots."""
    out = keypoints.astype(np.float32).copy()
    out[:, :2] = apply_affine(keypoints[:, :2], affine)
    return out[layout.flip_index()] if flipped else out


def warp_clip(images: Sequence[np.ndarray], affine: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """(T, h, w, C) uint8: every frame through the same matrix; outside the image is black."""
    h, w = input_size
    return np.stack(
        [
            cv2.warpAffine(
                image, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            for image in images
        ]
    )
