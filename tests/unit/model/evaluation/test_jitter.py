"""Jitter: the acceleration error of matched predictions along ground-truth tracks."""

from __future__ import annotations

import json
import math

import pytest

from tdmi.model.evaluation import POSEVAL_JOINTS, evaluate_posetrack_sequences
from tdmi.model.evaluation.smoothed import smooth_sequence
from tdmi.model.joints import POSETRACK_17
from tdmi.model.smoothing import OneEuroParams
from tdmi.service.cli import main

HEIGHT = 40.0  # the keypoint box height of ``pose``: three rows 20 px apart
FRAMES = 6


def pose(x0: float, y0: float) -> dict[str, tuple[float, float]]:
    return {name: (x0 + 20.0 * (k % 5), y0 + 20.0 * (k // 5)) for k, name in enumerate(POSEVAL_JOINTS)}


def person(points: dict[str, tuple[float, float]], track_id: int = 0) -> dict:
    keypoints: list[float] = []
    for name in POSETRACK_17.joints:
        x, y = points.get(name, (0.0, 0.0))
        keypoints += [x, y, 1 if name in points else 0]
    return {"keypoints": keypoints, "scores": [1.0] * 17, "track_id": track_id, "bbox_head": [0, 0, 30, 40]}


def sequence(frames: list[list[dict]]) -> dict:
    images = [{"id": k + 1, "frame_id": k + 1} for k in range(len(frames))]
    return {
        "images": images,
        "annotations": [{**a, "image_id": k + 1} for k, ps in enumerate(frames) for a in ps],
    }


def truth(t: int) -> dict[str, tuple[float, float]]:
    """A person that accelerates: the ground truth's own acceleration is not zero."""
    return pose(100.0 + 5 * t, 100.0 + t * t)


def shifted(points: dict[str, tuple[float, float]], dx: float, dy: float) -> dict[str, tuple[float, float]]:
    return {name: (x + dx, y + dy) for name, (x, y) in points.items()}


def jitter_of(pred_frames: list[list[dict]]):
    gt = sequence([[person(truth(t))] for t in range(FRAMES)])
    return evaluate_posetrack_sequences([gt], [sequence(pred_frames)]).jitter


def test_a_prediction_equal_to_the_ground_truth_has_no_jitter() -> None:
    j = jitter_of([[person(truth(t))] for t in range(FRAMES)])
    assert j.mean == 0.0
    assert j.triples == j.gt_triples == (FRAMES - 2) * 15


def test_a_constant_offset_has_no_jitter() -> None:
    j = jitter_of([[person(shifted(truth(t), 3.0, -2.0))] for t in range(FRAMES)])
    assert j.mean == pytest.approx(0.0, abs=1e-12) and j.triples == (FRAMES - 2) * 15


def test_alternating_noise_gives_four_times_its_amplitude_over_the_box_height() -> None:
    # x +- a in turn: the second difference of the noise is +-4a in every triple
    a = 2.0
    j = jitter_of([[person(shifted(truth(t), a * (-1) ** t, 0.0))] for t in range(FRAMES)])
    assert j.mean == pytest.approx(4 * a / HEIGHT)


def test_triples_with_an_unmatched_frame_are_skipped_and_counted_apart() -> None:
    # frame 0's prediction is far away (present, but the matching gives it to nobody): the triple
    # of frames 0-1-2 is left out; the others keep the alternating noise's value
    a = 2.0
    preds = [[person(shifted(truth(t), a * (-1) ** t, 0.0))] for t in range(FRAMES)]
    preds[0] = [person(pose(1000.0, 1000.0))]
    j = jitter_of(preds)
    assert j.gt_triples == (FRAMES - 2) * 15 and j.triples == (FRAMES - 3) * 15
    assert j.mean == pytest.approx(4 * a / HEIGHT)


def test_joints_missing_from_a_prediction_are_not_counted() -> None:
    preds = [[person(truth(t))] for t in range(FRAMES)]
    preds[2] = [person({k: v for k, v in truth(2).items() if k != "nose"})]
    j = jitter_of(preds)
    assert j.gt_triples - j.triples == 3  # the nose in the triples centred on frames 1, 2, 3


def test_no_counted_triple_gives_nan_and_json_null() -> None:
    j = jitter_of([[] for _ in range(FRAMES)])
    assert math.isnan(j.mean) and j.triples == 0 and j.to_dict()["mean"] is None


def test_the_cli_reports_jitter_in_json_and_text(capsys, tmp_path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    (gt / "seq.json").write_text(json.dumps(sequence([[person(truth(t))] for t in range(FRAMES)])))
    noisy = [[person(shifted(truth(t), 2.0 * (-1) ** t, 0.0))] for t in range(FRAMES)]
    (pred / "seq.json").write_text(json.dumps(sequence(noisy)))
    args = ["eval", "posetrack", "--gt", str(gt), "--pred", str(pred)]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["jitter"] == {"mean": pytest.approx(0.2), "triples": 60, "gt_triples": 60}
    assert data["per_sequence"]["seq"]["jitter"]["triples"] == 60
    assert main(args) == 0
    assert (
        "Jitter (acceleration error / GT keypoint-box height, lower is steadier): 0.2000 over 60 of 60"
        in (capsys.readouterr().out)
    )


def test_one_euro_smoothing_of_prediction_files_lowers_their_jitter(capsys, tmp_path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    frames = 12
    (gt / "seq.json").write_text(json.dumps(sequence([[person(truth(t))] for t in range(frames)])))
    noisy = [[person(shifted(truth(t), 2.0 * (-1) ** t, 0.0))] for t in range(frames)]
    (pred / "seq.json").write_text(json.dumps(sequence(noisy)))
    args = ["eval", "posetrack", "--gt", str(gt), "--pred", str(pred), "--json"]
    assert main(args) == 0
    raw = json.loads(capsys.readouterr().out)["jitter"]["mean"]
    assert main([*args, "--one-euro", "4", "0", "--fps", "25"]) == 0
    smoothed = json.loads(capsys.readouterr().out)["jitter"]["mean"]
    assert raw == pytest.approx(0.2) and smoothed < 0.5 * raw


def test_smoothing_needs_track_ids() -> None:
    untracked = sequence([[{**person(truth(t)), "track_id": None}] for t in range(3)])
    with pytest.raises(ValueError, match="track_id"):
        smooth_sequence(untracked, OneEuroParams(min_cutoff=1.0, beta=0.0), 25.0)
