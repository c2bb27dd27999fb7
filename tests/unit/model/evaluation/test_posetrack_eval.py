"""PoseTrack evaluation: hand-computed cases for each poseval rule, and poseval's own outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tdmi.model.evaluation import POSEVAL_JOINTS, evaluate_posetrack, evaluate_posetrack_sequences
from tdmi.model.evaluation.posetrack_io import inside_polygon
from tdmi.model.joints import POSETRACK_17
from tdmi.service.cli import main

REFERENCE = Path(__file__).parents[3] / "data" / "poseval_reference"
PRED_SETS = ("exact", "noise3", "noise10_drop_randscore", "missing_fp")
HEAD = [0.0, 0.0, 30.0, 40.0]  # diagonal 50: head size 30, a joint is right within 15 px


def pose(x0: float, y0: float) -> dict[str, tuple[float, float]]:
    """A person: the 15 evaluated joints 20 px apart, starting at (x0, y0)."""
    return {name: (x0 + 20.0 * (k % 5), y0 + 20.0 * (k // 5)) for k, name in enumerate(POSEVAL_JOINTS)}


def person(
    points: dict[str, tuple[float, ...]], track_id: int | None = 0, score: float | dict[str, float] = 1.0
) -> dict[str, Any]:
    """An annotation; a point of two numbers gets v = 1, absent joints are 0, 0, 0."""
    keypoints: list[float] = []
    scores: list[float] = []
    for name in POSETRACK_17.joints:
        p = points.get(name, (0.0, 0.0, 0.0))
        keypoints += [p[0], p[1], p[2] if len(p) == 3 else 1]
        scores.append(score.get(name, 1.0) if isinstance(score, dict) else score)
    return {"keypoints": keypoints, "scores": scores, "track_id": track_id, "bbox_head": HEAD}


def sequence(frames: list[list[dict]], first_id: int = 1, images: list[dict] | None = None) -> dict:
    """A sequence dict in the official format; ``images`` adds keys to each frame's entry."""
    entries = [
        {"id": first_id + k, "frame_id": first_id + k, **(images[k] if images else {})}
        for k in range(len(frames))
    ]
    annotations = [{**a, "image_id": first_id + k} for k, people in enumerate(frames) for a in people]
    return {"images": entries, "annotations": annotations}


def evaluate(gt_frames: list[list[dict]], pred_frames: list[list[dict]], **kwargs: Any):
    gt_images = kwargs.pop("images", None)
    return evaluate_posetrack_sequences(
        [sequence(gt_frames, images=gt_images)], [sequence(pred_frames, first_id=100)], **kwargs
    )


# ---------------------------------------------------------------- hand-computed AP


def test_one_exact_person_scores_100_everywhere() -> None:
    metrics = evaluate([[person(pose(100, 100))]], [[person(pose(100, 100))]])
    assert metrics.ap.per_joint == (100.0,) * 15 and metrics.ap.total == 100.0
    assert set(metrics.ap.columns().values()) == {100.0}
    assert metrics.precision.total == metrics.recall.total == 100.0
    assert metrics.num_frames == 1 and metrics.tracking is None  # one frame: nothing to track


@pytest.mark.parametrize(("wrong_score", "expected"), [(0.9, 25.0), (0.1, 50.0)])
def test_a_joint_off_by_more_than_half_a_head_lowers_its_ap(wrong_score: float, expected: float) -> None:
    # two people; B's left wrist is 16 px off (> 15). Ranked wrong-then-right: precision 0, 1/2
    # at recall 0, 1/2 -> AP = 1/2 * 1/2 = 25. Right-then-wrong: 1, 1/2 at 1/2, 1/2 -> AP 50.
    a, b = pose(100, 100), pose(400, 100)
    moved = dict(b, left_wrist=(b["left_wrist"][0] + 16, b["left_wrist"][1]))
    preds = [person(a, 0, {"left_wrist": 0.5}), person(moved, 1, {"left_wrist": wrong_score})]
    metrics = evaluate([[person(a, 0), person(b, 1)]], [preds])
    ap = metrics.ap.by_joint()
    assert ap["left_wrist"] == expected
    assert all(v == 100.0 for k, v in ap.items() if k != "left_wrist")
    assert metrics.ap.columns()["Wrist"] == (100.0 + expected) / 2
    assert metrics.ap.total == pytest.approx((14 * 100.0 + expected) / 15, abs=1e-12)
    assert metrics.precision.by_joint()["left_wrist"] == metrics.recall.by_joint()["left_wrist"] == 50.0


def test_threshold_is_half_the_head_size() -> None:
    # head size 0.6 * 50 = 30: 15 px off is still right, 15.5 px is not
    base = pose(100, 100)
    for offset, expected in ((15.0, 100.0), (15.5, 0.0)):
        moved = dict(base, nose=(base["nose"][0], base["nose"][1] + offset))
        assert evaluate([[person(base)]], [[person(moved)]]).ap.by_joint()["nose"] == expected


def test_predictions_in_ignore_regions_are_removed() -> None:
    # a spurious person scored above the true one: ranked first, it halves every joint's AP
    # (precision 0 then 1/2, recall 0 then 1 -> AP 50) unless it lies in an ignore region.
    truth, ghost = pose(100, 100), pose(500, 500)
    preds = [[person(truth, score=0.5), person(ghost, track_id=1, score=0.9)]]
    region = {"ignore_regions_x": [[480, 600, 600, 480]], "ignore_regions_y": [[480, 480, 600, 600]]}
    assert evaluate([[person(truth)]], preds).ap.total == 50.0
    assert evaluate([[person(truth)]], preds, images=[region]).ap.total == 100.0


def test_ground_truth_points_in_ignore_regions_are_removed_too() -> None:
    # the right ankle lies in the region: it is no longer a ground-truth joint, so the missed
    # prediction of it does not count, and a prediction of it would be removed as well
    truth = pose(100, 100)
    x, y = truth["right_ankle"]
    region = {
        "ignore_regions_x": [[x - 5, x + 5, x + 5, x - 5]],
        "ignore_regions_y": [[y - 5, y - 5, y + 5, y + 5]],
    }
    without_ankle = {k: v for k, v in truth.items() if k != "right_ankle"}
    plain = evaluate([[person(truth)]], [[person(without_ankle)]])
    assert plain.ap.by_joint()["right_ankle"] == 0.0  # a joint nobody predicted: AP 0
    ignored = evaluate([[person(truth)]], [[person(without_ankle)]], images=[region])
    assert ignored.ap.by_joint()["right_ankle"] == 0.0 and ignored.recall.by_joint()["right_ankle"] == 0.0
    assert evaluate([[person(truth)]], [[person(truth)]], images=[region]).ap.by_joint()["right_ankle"] == 0.0
    assert evaluate([[person(truth)]], [[person(truth)]]).ap.by_joint()["right_ankle"] == 100.0


def test_point_in_polygon_follows_geos() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    points = np.array([[5, 5], [10, 5], [0, 0], [5, 10], [11, 5], [-1, 5]], float)
    assert inside_polygon(points, square).tolist() == [True, False, False, False, False, False]
    bow_tie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)  # self-intersecting
    assert inside_polygon(np.array([[2, 5], [8, 5], [5, 2], [5, 8]], float), bow_tie).tolist() == [
        True,
        True,
        False,
        False,
    ]
    assert not inside_polygon(np.array([[1.0, 1.0]]), square[:2]).any()  # fewer than 3 points


def test_a_joint_is_missing_only_when_x_y_v_are_all_zero() -> None:
    truth = pose(100, 100)
    x, y = truth["left_ankle"]
    # v = 0 with a position: still a ground-truth joint, found by the prediction
    hidden = dict(truth, left_ankle=(x, y, 0))
    assert evaluate([[person(hidden)]], [[person(truth)]]).ap.by_joint()["left_ankle"] == 100.0
    # x = y = v = 0: no ground-truth joint; the prediction of it has nothing to find -> nan,
    # which poseval leaves out of the total
    missing = dict(truth, left_ankle=(0.0, 0.0, 0))
    metrics = evaluate([[person(missing)]], [[person(truth)]])
    assert math.isnan(metrics.ap.by_joint()["left_ankle"])
    assert metrics.ap.total == 100.0
    assert metrics.to_dict()["ap"]["per_joint"]["left_ankle"] is None
    json.dumps(metrics.to_dict(), allow_nan=False)


def test_frames_are_paired_by_position_not_by_id() -> None:
    a, b = pose(100, 100), pose(600, 600)
    gt = [[person(a)], [person(b)]]
    # prediction image ids (100, 101) differ from the ground truth's (1, 2): position decides
    assert evaluate(gt, [[person(a)], [person(b)]]).ap.total == 100.0
    assert evaluate(gt, [[person(b)], [person(a)]]).ap.total == 0.0


def test_unlabelled_frames_do_not_count_and_the_filter_restricts_frames() -> None:
    a = pose(100, 100)
    spurious = person(pose(600, 600), track_id=5, score=0.1)
    gt = [[person(a)], [], [person(a)]]
    preds = [[person(a)], [spurious], [person(a, score=0.5), spurious]]
    metrics = evaluate(gt, preds, images=[{}, {}, {"blurred": True}])
    assert metrics.num_frames == 2  # the frame without annotations is left out with its prediction
    assert metrics.ap.total == 100.0  # the spurious person of frame 3 ranks after the true ones
    spurious_first = evaluate(gt, [[person(a)], [], [person(a, score=0.5), person(pose(600, 600), 5, 0.9)]])
    assert spurious_first.ap.total == pytest.approx(100 * (1 / 2 * 1 + 1 / 2 * 2 / 3))
    only_blurred = evaluate(
        gt, preds, images=[{}, {}, {"blurred": True}], image_filter=lambda image: image.get("blurred", False)
    )
    assert only_blurred.num_frames == 1 and only_blurred.ap.total == 100.0


# ---------------------------------------------------------------- tracking by hand


def _tracks(ids_per_frame: list[tuple[int, int]], offset: float = 0.0):
    a, b = pose(100, 100), pose(600, 100)
    shifted = [{k: (x + offset, y) for k, (x, y) in p.items()} for p in (a, b)]
    gt = [[person(a, 0), person(b, 1)] for _ in ids_per_frame]
    preds = [[person(shifted[0], i), person(shifted[1], j)] for i, j in ids_per_frame]
    return evaluate(gt, preds)


def test_consistent_tracks_give_mota_100_and_the_last_frame_is_left_out() -> None:
    metrics = _tracks([(7, 8), (7, 8), (7, 8)])
    t = metrics.tracking
    assert t is not None and t.num_frames == 2
    assert t.mota.total == t.motp.total == t.precision.total == t.recall.total == 100.0
    assert t.counts == {"misses": 0, "switches": 0, "false_positives": 0, "objects": 60, "detections": 60}
    # a swap in the last frame is not seen
    assert _tracks([(7, 8), (7, 8), (8, 7)]).tracking.mota.total == 100.0


def test_a_track_id_switch_lowers_mota_by_the_switches() -> None:
    # frames 1-2 evaluated: per joint 4 objects; the swap makes both pairs switch:
    # MOTA = 100 (1 - 2 / 4) = 50 for every joint
    t = _tracks([(7, 8), (8, 7), (8, 7)]).tracking
    assert t is not None
    assert t.counts["switches"] == 30 and t.counts["misses"] == t.counts["false_positives"] == 0
    assert t.mota.per_joint == (50.0,) * 15 and t.mota.total == 50.0
    assert t.precision.total == t.recall.total == 100.0  # switches are still detections


def test_motp_adds_candidate_pairs_to_the_distances_as_poseval_does() -> None:
    # every joint 3 px off with head size 30: distance 0.1. motmetrics' distance column holds
    # each candidate pair (0.1) and each match (0.1): MOTP = 100 (1 - 0.2) = 80, not 90
    t = _tracks([(7, 8), (7, 8), (7, 8)], offset=3.0).tracking
    assert t is not None
    assert t.motp.total == pytest.approx(80.0, abs=1e-9)
    assert t.mota.total == 100.0


def test_a_frame_without_predictions_counts_one_miss_and_one_false_positive_per_joint() -> None:
    # poseval's stand-in for an empty frame: one object and one hypothesis that cannot match,
    # whatever the number of people: per joint 2 + 1 objects, 1 miss, 1 false positive
    a, b = pose(100, 100), pose(600, 100)
    gt = [[person(a, 0), person(b, 1)]] * 3
    preds = [[person(a, 0), person(b, 1)], [], [person(a, 0), person(b, 1)]]
    t = evaluate(gt, preds).tracking
    assert t is not None
    assert t.counts == {"misses": 15, "switches": 0, "false_positives": 15, "objects": 45, "detections": 30}
    assert t.mota.total == pytest.approx(100 * (1 - 2 / 3))


def test_tracking_needs_track_ids() -> None:
    a = pose(100, 100)
    assert evaluate([[person(a)]] * 2, [[person(a, track_id=None)]] * 2).tracking is None
    with pytest.raises(ValueError, match="ground-truth person has no track_id"):
        evaluate([[person(a, track_id=None)]] * 2, [[person(a)]] * 2)
    with pytest.raises(ValueError, match="same track_id on two people"):
        evaluate([[person(a)]], [[person(a, 3), person(pose(400, 400), 3)]])


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_one_readable_line(tmp_path: Path) -> None:
    a = pose(100, 100)
    with pytest.raises(ValueError, match="predictions have 1 images but the ground truth has 2"):
        evaluate([[person(a)], [person(a)]], [[person(a)]])
    with pytest.raises(ValueError, match="expected 51 keypoint numbers"):
        evaluate([[person(a)]], [[{**person(a), "keypoints": [1, 2, 3]}]])
    with pytest.raises(ValueError, match="sequence names differ"):
        evaluate_posetrack_sequences({"a": sequence([[person(a)]])}, {"b": sequence([[person(a)]])})
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    with pytest.raises(ValueError, match="ground-truth directory not found"):
        evaluate_posetrack(gt_dir, pred_dir)
    gt_dir.mkdir()
    pred_dir.mkdir()
    (gt_dir / "s1.json").write_text(json.dumps(sequence([[person(a)]])))
    (pred_dir / "s2.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no predictions for s1\.json; no ground truth for s2\.json"):
        evaluate_posetrack(gt_dir, pred_dir)
    (pred_dir / "s2.json").unlink()
    (pred_dir / "s1.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"s1\.json: not valid JSON"):
        evaluate_posetrack(gt_dir, pred_dir)
    (pred_dir / "s1.json").write_text(json.dumps({"annolist": []}))
    with pytest.raises(ValueError, match="not a PoseTrack sequence"):
        evaluate_posetrack(gt_dir, pred_dir)


# ---------------------------------------------------------------- poseval's own outputs


def _saved(values) -> list[float]:
    return [*values.per_joint, values.total]


def _assert_saved(ours, saved: dict, keys: dict[str, str]) -> None:
    """The same numbers to 1e-12 relative (summation order differs across numpy versions; nan where
    poseval saved NaN)."""
    for ours_name, saved_name in keys.items():
        actual, desired = _saved(getattr(ours, ours_name)), saved[saved_name]
        np.testing.assert_allclose(actual, desired, rtol=1e-12, atol=1e-9, equal_nan=True, err_msg=saved_name)


def _printed_table_lines(stdout: Path) -> list[str]:
    lines = stdout.read_text().splitlines()
    return [line for line in lines if line.startswith("&")]


@pytest.mark.parametrize("name", PRED_SETS)
def test_every_number_poseval_saved_is_ours(name: str) -> None:
    metrics = evaluate_posetrack(REFERENCE / "gt", REFERENCE / f"pred_{name}")
    out = REFERENCE / "out" / name
    ap_keys = {"ap": "ap", "precision": "pre", "recall": "rec"}
    _assert_saved(metrics, json.loads((out / "total_AP_metrics.json").read_text()), ap_keys)
    assert len(metrics.per_sequence) == 3
    for seq, seq_metrics in metrics.per_sequence.items():
        _assert_saved(seq_metrics, json.loads((out / f"{seq}_AP_metrics.json").read_text()), ap_keys)
    assert metrics.table().splitlines()[1:] == _printed_table_lines(out / "stdout.txt")


def test_one_frame_sequences_have_no_tracking_where_poseval_crashed() -> None:
    metrics = evaluate_posetrack(REFERENCE / "gt", REFERENCE / "pred_exact")
    out = REFERENCE / "out" / "exact_tracking_attempt"
    assert "IndexError" in (out / "stdout.txt").read_text()
    assert _saved(metrics.ap) == json.loads((out / "total_AP_metrics.json").read_text())["ap"]
    assert metrics.tracking is None


def test_every_tracking_number_poseval_saved_is_ours() -> None:
    case = REFERENCE / "tracking"
    metrics = evaluate_posetrack(case / "gt", case / "pred")
    out = case / "out"
    mot_keys = {"mota": "mota", "motp": "motp", "precision": "pre", "recall": "rec"}
    _assert_saved(
        metrics,
        json.loads((out / "total_AP_metrics.json").read_text()),
        {"ap": "ap", "precision": "pre", "recall": "rec"},
    )
    _assert_saved(metrics.tracking, json.loads((out / "total_MOT_metrics.json").read_text()), mot_keys)
    for seq, seq_metrics in metrics.per_sequence.items():
        _assert_saved(seq_metrics, json.loads((out / f"{seq}_AP_metrics.json").read_text()), {"ap": "ap"})
        _assert_saved(
            seq_metrics.tracking, json.loads((out / f"{seq}_MOT_metrics.json").read_text()), mot_keys
        )
    assert metrics.tracking.counts["switches"] > 0 and metrics.tracking.counts["false_positives"] > 0
    assert metrics.table().splitlines()[1:3] + metrics.table().splitlines()[4:] == _printed_table_lines(
        out / "stdout.txt"
    )


def test_cli_prints_json_and_the_table(capsys) -> None:
    args = ["eval", "posetrack", "--gt", str(REFERENCE / "gt"), "--pred", str(REFERENCE / "pred_missing_fp")]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    saved = json.loads((REFERENCE / "out" / "missing_fp" / "total_AP_metrics.json").read_text())
    assert data["ap"]["columns"]["Total"] == saved["ap"][-1]
    assert data["ap"]["per_joint"]["head_bottom"] == saved["ap"][12]
    assert data["tracking"] is None and set(data["per_sequence"]) == {
        "003418_mpii_test",
        "009473_mpii_test",
        "012834_mpii_test",
    }
    assert main(args) == 0
    assert "& 85.9 & 86.2 & 83.6 & 82.6 & 85.2 & 81.0 & 81.0 & 83.8 \\\\" in capsys.readouterr().out
    assert main(["eval", "posetrack", "--gt", "/nonexistent", "--pred", str(REFERENCE)]) == 2
    assert "tdmi: error: ground-truth directory not found" in capsys.readouterr().err
