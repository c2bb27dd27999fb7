"""Augmentation draws, half-body crops and the one affine per clip (flip folded in)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tdmi.model.data.transforms import (
    HALF_BODY_ENLARGE,
    Augmentation,
    AugmentConfig,
    choose_crop,
    clip_affine,
    crop_keypoints,
    flip_affine,
    half_body_box,
    lower_body_joints,
    sample_augmentation,
    warp_clip,
)
from tdmi.model.geometry import CropBox, apply_affine, box_to_crop, crop_affine, invert_affine
from tdmi.model.joints import COCO_17, POSETRACK_17

INPUT = (64, 48)  # (h, w)


def _keypoints(rng: np.random.Generator, labelled: np.ndarray) -> np.ndarray:
    points = np.zeros((17, 3), np.float32)
    points[:, :2] = rng.uniform(20, 200, size=(17, 2))
    points[:, 2] = labelled
    return points


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("rotation", [0.0, 33.0, -45.0])
@pytest.mark.parametrize("scale", [0.65, 1.0, 1.35])
def test_affine_and_its_inverse_round_trip_exactly(flip: bool, rotation: float, scale: float) -> None:
    crop = box_to_crop((40.0, 30.0, 110.0, 190.0), aspect_ratio=48 / 64)
    affine = clip_affine(crop, INPUT, image_width=160, augmentation=Augmentation(rotation, scale, flip))
    points = np.random.default_rng(0).uniform(0, 200, size=(50, 2))
    back = apply_affine(apply_affine(points, affine), invert_affine(affine))
    np.testing.assert_allclose(back, points, atol=1e-9)
    # the box centre lands in the middle of the input, whatever the augmentation
    np.testing.assert_allclose(apply_affine(np.array([75.0, 110.0]), affine), [24.0, 32.0], atol=1e-9)


def test_flip_is_a_mirror_and_undoes_itself() -> None:
    flip = flip_affine(100)
    np.testing.assert_allclose(apply_affine(np.array([[0.0, 5.0], [99.0, 7.0], [30.5, 1.0]]), flip), [
        [99.0, 5.0], [0.0, 7.0], [68.5, 1.0]
    ])  # fmt: skip
    twice = apply_affine(apply_affine(np.array([[12.25, 3.0]]), flip), flip)
    np.testing.assert_allclose(twice, [[12.25, 3.0]])


def test_flip_folded_into_the_affine_equals_mirroring_the_pixels_first() -> None:
    """One warp with the flip inside == HRNet's mirror image, mirrored centre, then crop."""
    rng = np.random.default_rng(3)
    # smooth, so that cv2's 1/32-pixel fixed-point sampling positions (which do not mirror
    # exactly) change a value by at most a level or two
    noise = rng.integers(0, 256, size=(90, 120, 3)).astype(np.float32)
    image = np.clip(cv2.GaussianBlur(noise, (0, 0), 3) * 4 - 384, 0, 255).astype(np.uint8)
    crop = CropBox(47.0, 41.0, 60.0, 80.0)
    aug = Augmentation(rotation_deg=20.0, scale=1.1, flip=True)
    folded = warp_clip([image], clip_affine(crop, INPUT, 120, aug), INPUT)[0]
    mirrored_crop = CropBox(120 - 1 - crop.cx, crop.cy, crop.width, crop.height)
    plain = crop_affine(mirrored_crop, (INPUT[1], INPUT[0]), 20.0, 1.1)
    reference = warp_clip([np.ascontiguousarray(image[:, ::-1])], plain, INPUT)[0]
    assert folded.std() > 20  # the crop shows the picture, not the black border
    difference = np.abs(folded.astype(int) - reference.astype(int))
    assert difference.max() <= 2 and difference.mean() < 0.5


def test_keypoints_follow_the_flip_and_swap_sides() -> None:
    rng = np.random.default_rng(1)
    points = _keypoints(rng, np.ones(17))
    crop = box_to_crop((20, 20, 200, 200), 48 / 64)
    flipped = clip_affine(crop, INPUT, 240, Augmentation(flip=True))
    out = crop_keypoints(points, flipped, True, POSETRACK_17)
    left_wrist, right_wrist = (
        POSETRACK_17.joints.index("left_wrist"),
        POSETRACK_17.joints.index("right_wrist"),
    )
    np.testing.assert_allclose(out[right_wrist, :2], apply_affine(points[left_wrist, :2], flipped), atol=1e-4)
    nose = POSETRACK_17.joints.index("nose")  # unpaired joints keep their slot
    np.testing.assert_allclose(out[nose, :2], apply_affine(points[nose, :2], flipped), atol=1e-4)
    # swapping again restores the original order
    back = crop_keypoints(out, np.array([[1.0, 0, 0], [0, 1, 0]]), True, POSETRACK_17)
    np.testing.assert_allclose(back[:, :2], apply_affine(points[:, :2], flipped), atol=1e-4)
    unflipped = crop_keypoints(points, clip_affine(crop, INPUT, 240), False, POSETRACK_17)
    np.testing.assert_allclose(
        unflipped[:, :2], apply_affine(points[:, :2], clip_affine(crop, INPUT, 240)), atol=1e-4
    )


def test_augmentation_draws_stay_in_their_ranges() -> None:
    config = AugmentConfig()
    rng = np.random.default_rng(0)
    draws = [sample_augmentation(config, rng) for _ in range(2000)]
    rotations = np.array([d.rotation_deg for d in draws])
    scales = np.array([d.scale for d in draws])
    assert np.abs(rotations).max() <= 45.0 and np.abs(rotations).max() > 40.0
    assert 0.55 < (rotations != 0).mean() < 0.65
    assert scales.min() >= 0.65 and scales.max() <= 1.35 and scales.max() - scales.min() > 0.6
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    still = sample_augmentation(AugmentConfig(rotation_prob=0.0, flip_prob=0.0, scale_range=(1.0, 1.0)), rng)
    assert still == Augmentation()


def test_lower_body_is_hips_knees_ankles_in_both_layouts() -> None:
    for layout in (COCO_17, POSETRACK_17):
        assert np.flatnonzero(lower_body_joints(layout)).tolist() == list(range(11, 17))


def test_half_body_box_spans_one_half_around_its_mean() -> None:
    rng = np.random.default_rng(2)
    points = _keypoints(rng, np.ones(17))
    lower = lower_body_joints(POSETRACK_17)
    chosen = []
    for _ in range(40):
        box = half_body_box(points, POSETRACK_17, rng)
        assert box is not None
        centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
        matches = [
            np.allclose(centre, points[half, :2].mean(axis=0), atol=1e-3)
            and np.allclose(size, np.ptp(points[half, :2], axis=0), atol=1e-3)
            for half in (lower, ~lower)
        ]
        assert sum(matches) == 1
        chosen.append(matches[0])
    assert 0 < sum(chosen) < 40  # both halves get chosen


def test_half_body_falls_back_and_gives_up() -> None:
    rng = np.random.default_rng(0)
    only_legs = _keypoints(rng, np.r_[np.zeros(11), np.ones(6)])
    for _ in range(10):  # the upper half has no joints, so the lower half is always used
        box = half_body_box(only_legs, POSETRACK_17, rng)
        assert box is not None
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, only_legs[11:, :2].mean(axis=0), atol=1e-3)
    one_joint = _keypoints(rng, np.r_[1, np.zeros(16)])
    assert half_body_box(one_joint, POSETRACK_17, rng) is None


def test_choose_crop_uses_half_body_only_with_enough_joints() -> None:
    rng = np.random.default_rng(4)
    always = AugmentConfig(half_body_prob=1.0)
    box = np.array([0.0, 0.0, 300.0, 400.0])
    few = _keypoints(rng, np.r_[np.ones(7), np.zeros(10)])
    assert choose_crop(box, few, POSETRACK_17, 0.75, always, rng) == box_to_crop(box, 0.75)
    many = _keypoints(rng, np.ones(17))
    crop = choose_crop(box, many, POSETRACK_17, 0.75, always, rng)
    assert crop != box_to_crop(box, 0.75)
    assert crop.width / crop.height == pytest.approx(0.75)
    lower = lower_body_joints(POSETRACK_17)
    candidates = []
    for half in (lower, ~lower):
        points = many[half, :2]
        centre, size = points.mean(axis=0), np.ptp(points, axis=0)
        box_of_half = np.r_[centre - size / 2, centre + size / 2]
        candidates.append(box_to_crop(box_of_half, 0.75, enlarge=HALF_BODY_ENLARGE))
    assert any(
        np.allclose([crop.cx, crop.cy, crop.width, crop.height], [c.cx, c.cy, c.width, c.height], atol=1e-3)
        for c in candidates
    )
