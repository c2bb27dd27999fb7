"""Evaluation subsets of synthetic video and the paired bootstrap over videos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdmi.model.evaluation.subsets import mean_ap, only_occluded_joints, paired_bootstrap, subset_matches

# a person whose 15 evaluated joints spread over a 100 px box; head box 40 px (PCKh threshold 20 px)
_XY = np.array([[10 + 6 * j, 20 + 5 * j] for j in range(17)], dtype=float)
_LABELLED = [j for j in range(17) if j not in (3, 4)]  # PoseTrack never labels the ears


def _keypoints(xy: np.ndarray) -> list[float]:
    return [v for j in range(17) for v in ((*xy[j], 1) if j in _LABELLED else (0, 0, 0))]


def _sequence(frames: int, hidden: list[int], tags: list[dict], pred_shift: dict[int, float]) -> tuple:
    """Ground truth and predictions of one video with one person; joints in ``pred_shift`` are
    predicted that many pixels off (30 px: a miss), every other joint exactly."""
    images = [{"id": 100 + k, "synthetic": tags[k]} for k in range(frames)]
    gt_anns, pred_anns = [], []
    for k in range(frames):
        base = {"image_id": 100 + k, "track_id": 1, "bbox_head": [0, 0, 40, 40]}
        gt_anns.append({**base, "keypoints": _keypoints(_XY), "occluded_joints": hidden})
        shifted = _XY.copy()
        for j, dx in pred_shift.items():
            shifted[j, 0] += dx
        pred_anns.append(
            {"image_id": 100 + k, "track_id": 1, "keypoints": _keypoints(shifted), "scores": [0.9] * 17}
        )
    return {"images": images, "annotations": gt_anns}, {"images": images, "annotations": pred_anns}


CLEAN = {"occluded": False, "blurred": False}
BLUR = {"occluded": False, "blurred": True}


def test_occluded_joint_subset_scores_only_the_hidden_joints() -> None:
    """Wrong elbows (7, 8) are hidden: the occluded subset sees only them, overall they are 2 of 15."""
    gt, pred = _sequence(4, hidden=[7, 8], tags=[CLEAN] * 4, pred_shift={7: 30.0, 8: 30.0})
    gt_only, pred_only = only_occluded_joints(gt, pred)
    for only in (gt_only, pred_only):  # the same joints left on both sides
        kept = np.array(only["annotations"][0]["keypoints"]).reshape(17, 3)
        assert set(np.flatnonzero(kept[:, 2])) == {7, 8}
    occluded = mean_ap(subset_matches({"v": gt}, {"v": pred}, "occluded_joints"))
    overall = mean_ap(subset_matches({"v": gt}, {"v": pred}, "all"))
    assert occluded == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < overall < 100.0


def test_visible_joints_do_not_count_against_the_occluded_subset() -> None:
    gt, pred = _sequence(3, hidden=[9], tags=[CLEAN] * 3, pred_shift={5: 30.0, 6: 30.0})  # wrong shoulders
    assert mean_ap(subset_matches({"v": gt}, {"v": pred}, "occluded_joints")) == pytest.approx(100.0)


def test_frame_subsets_follow_the_blur_and_occlusion_tags() -> None:
    tags = [CLEAN, BLUR, {"occluded": True, "blurred": False}]
    gt, pred = _sequence(3, hidden=[], tags=tags, pred_shift={})
    blurred = subset_matches({"v": gt}, {"v": pred}, "blurred_frames")
    clean = subset_matches({"v": gt}, {"v": pred}, "clean_frames")
    assert len(blurred["v"]) == 1 and len(clean["v"]) == 1
    with pytest.raises(ValueError, match="unknown subset"):
        subset_matches({"v": gt}, {"v": pred}, "dark_frames")


def test_paired_bootstrap_brackets_a_consistent_difference() -> None:
    """Model a is right everywhere; b misses the wrists in every video: a - b > 0, interval too."""
    gt, good, bad = {}, {}, {}
    for v in range(6):
        g, p = _sequence(2, hidden=[], tags=[CLEAN] * 2, pred_shift={})
        _, q = _sequence(2, hidden=[], tags=[CLEAN] * 2, pred_shift={9: 30.0, 10: 30.0})
        gt[f"v{v}"], good[f"v{v}"], bad[f"v{v}"] = g, p, q
    a, b = subset_matches(gt, good, "all"), subset_matches(gt, bad, "all")
    diff = paired_bootstrap(a, b, resamples=50, seed=0)
    assert diff.value > 0 and diff.low > 0 and diff.low <= diff.value <= diff.high
    same = paired_bootstrap(a, a, resamples=20, seed=0)
    assert same.value == 0.0 and same.low == 0.0 and same.high == 0.0
    assert not math.isnan(diff.value)
