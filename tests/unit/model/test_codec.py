"""Heatmap targets and decoding, crop geometry, joint layouts and the flip test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdmi.model.codec import decode_heatmaps, flip_back, flip_heatmaps, flip_test, gaussian_targets
from tdmi.model.geometry import apply_affine, box_to_crop, crop_affine, invert_affine
from tdmi.model.joints import COCO_17, POSETRACK_17


def test_gaussian_decodes_back_within_a_quarter_pixel() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform([2, 2], [45, 61], size=(17, 2))
    targets, weights = gaussian_targets(points, np.ones(17), heatmap_size=(48, 64), sigma=2.0)
    assert targets.shape == (17, 64, 48) and weights.tolist() == [1.0] * 17
    coords, scores = decode_heatmaps(torch.from_numpy(targets)[None])
    error = np.abs(coords[0].numpy() - points)
    assert error.max() <= 0.25 + 1e-6
    assert (scores > 0.9).all()


def test_decoding_is_exact_on_integer_points_and_borders() -> None:
    points = np.array([[0.0, 0.0], [47.0, 63.0], [10.0, 20.0]])
    targets, _ = gaussian_targets(points, np.ones(3), (48, 64), sigma=2.0)
    coords, _ = decode_heatmaps(torch.from_numpy(targets)[None])
    np.testing.assert_allclose(coords[0].numpy(), points)


def test_invisible_and_far_outside_joints_weigh_zero() -> None:
    points = np.array([[5.0, 5.0], [5.0, 5.0], [-20.0, 5.0]])
    targets, weights = gaussian_targets(points, np.array([1, 0, 1]), (16, 16), sigma=2.0)
    assert weights.tolist() == [1.0, 0.0, 0.0]
    assert targets[1:].max() == 0.0


@pytest.mark.parametrize("rotation", [0.0, 30.0, -45.0])
def test_round_trip_through_the_crop_affine(rotation: float) -> None:
    """Image point -> crop -> heatmap Gaussian -> decode -> back to the image."""
    input_size, heatmap_size = (96, 128), (24, 32)  # (w, h)
    crop = box_to_crop((300.0, 120.0, 360.0, 290.0), aspect_ratio=96 / 128)
    to_heatmap = crop_affine(crop, heatmap_size, rotation_deg=rotation)
    rng = np.random.default_rng(1)
    image_points = rng.uniform([310, 150], [350, 260], size=(17, 2))
    hm_points = apply_affine(image_points, to_heatmap)
    targets, _ = gaussian_targets(hm_points, np.ones(17), heatmap_size, sigma=1.5)
    coords, _ = decode_heatmaps(torch.from_numpy(targets)[None])
    back = apply_affine(coords[0].double().numpy(), invert_affine(to_heatmap))
    pixel = crop.width / heatmap_size[0]  # one heatmap pixel in image pixels
    assert np.abs(back - image_points).max() <= 0.25 * pixel * np.sqrt(2) + 1e-6
    # the same affine for the input size differs only by the stride
    to_input = crop_affine(crop, input_size, rotation_deg=rotation)
    np.testing.assert_allclose(apply_affine(image_points, to_input), hm_points * 4, rtol=1e-9, atol=1e-9)


def test_box_to_crop_keeps_ratio_and_enlarges() -> None:
    crop = box_to_crop((0, 0, 10, 40), aspect_ratio=0.75)
    assert (crop.cx, crop.cy) == (5, 20)
    assert crop.width / crop.height == pytest.approx(0.75)
    assert crop.height == pytest.approx(40 * 1.25)


def test_flip_back_inverts_a_mirrored_prediction() -> None:
    heatmaps = torch.randn(2, 17, 8, 6)
    index = COCO_17.flip_index()
    assert torch.equal(flip_heatmaps(flip_heatmaps(heatmaps, index), index), heatmaps)
    shifted = flip_back(flip_heatmaps(heatmaps, index), index, shift=True)
    assert torch.equal(shifted[..., 1:], heatmaps[..., :-1])


def test_flip_test_of_a_mirror_symmetric_model_is_its_output() -> None:
    """A model that ignores its input gives the average of its output and its mirror."""
    fixed = torch.randn(1, 17, 8, 6)
    index = POSETRACK_17.flip_index()
    out = flip_test(lambda x: fixed, torch.randn(1, 5, 3, 32, 24), index)
    assert torch.allclose(out, 0.5 * (fixed + flip_back(fixed, index)))


def test_layouts() -> None:
    assert COCO_17.num_joints == POSETRACK_17.num_joints == 17
    assert POSETRACK_17.joints[1:3] == ("head_bottom", "head_top")
    assert 3 not in POSETRACK_17.evaluated and 4 not in POSETRACK_17.evaluated
    assert len(POSETRACK_17.evaluated) == 15
    for layout in (COCO_17, POSETRACK_17):
        index = layout.flip_index()
        assert sorted(index) == list(range(17))
        assert all(index[index[i]] == i for i in range(17))
        for a, b in layout.flip_pairs:
            assert layout.joints[a].replace("left", "right") == layout.joints[b]
        assert all(0 <= a < 17 and 0 <= b < 17 for a, b in layout.skeleton)
    assert all(3 not in edge and 4 not in edge for edge in POSETRACK_17.skeleton)
