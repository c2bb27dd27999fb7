"""Predictions in the official PoseTrack format that our evaluator scores, tracks assigned frame by
frame in each video, and the ``tdmi predict`` command on given boxes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.evaluation.posetrack import evaluate_posetrack
from tdmi.model.evaluation.predict import PersonPrediction, assign_tracks, predict_posetrack, write_results
from tdmi.model.presets import get_preset
from tdmi.model.tracking import PoseTracker, TrackerConfig
from tdmi.service.cli import main

TINY = get_preset("tdmi-tiny")


class _Oracle(nn.Module):
    """Answers each batch with the data set's own target heatmaps, in data set order."""

    def __init__(self, dataset: PoseTrackClips):
        super().__init__()
        self.targets = torch.stack([dataset[i]["target"] for i in range(len(dataset))])
        self.next = 0

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        out = self.targets[self.next : self.next + len(clips)]
        self.next += len(clips)
        return out


@pytest.mark.slow
def test_predictions_are_official_json_that_the_evaluator_scores(
    synth_posetrack: Path, tmp_path: Path
) -> None:
    gt_dir = synth_posetrack / "annotations" / "val"
    dataset = PoseTrackClips(synth_posetrack, gt_dir, TINY.input_size, 2, TINY.layout)
    results = predict_posetrack(_Oracle(dataset), TINY, dataset, batch_size=8)
    write_results(results, tmp_path / "pred")
    for path in sorted(gt_dir.glob("*.json")):
        gt, pred = json.loads(path.read_text()), json.loads((tmp_path / "pred" / path.name).read_text())
        assert pred["images"] == gt["images"]
        assert len(pred["annotations"]) == sum(1 for a in gt["annotations"] if any(a["keypoints"][2::3]))
        ids = {image["id"] for image in gt["images"]}
        for ann in pred["annotations"]:
            assert ann["image_id"] in ids and len(ann["keypoints"]) == 51 and len(ann["scores"]) == 17
    oracle = evaluate_posetrack(gt_dir, tmp_path / "pred").ap.total
    untrained = evaluate_posetrack(gt_dir, _predict_dir(TINY.build(), dataset, tmp_path / "u")).ap.total
    assert oracle > 95.0 and untrained < 50.0


def _predict_dir(net: nn.Module, dataset: PoseTrackClips, out: Path) -> Path:
    write_results(predict_posetrack(net, TINY, dataset, batch_size=8), out)
    return out


def _walker(sequence: str, frame: int, person: int) -> PersonPrediction:
    """Person ``person`` of a video, walking right 3 px a frame; people stand 60 px apart."""
    x, y = 10.0 + 3 * frame, 20.0 + 60 * person
    points = np.stack([np.linspace(x, x + 20, 17), np.linspace(y, y + 40, 17)], axis=1).astype(np.float32)
    box = np.array([x, y, x + 20, y + 40], np.float32)
    return PersonPrediction(sequence, frame, box, 1.0, points, np.ones(17, np.float32), -1)


def test_tracks_follow_people_frame_by_frame_in_each_video() -> None:
    people = [
        _walker(seq, t, k) for seq in ("a", "b") for t in range(6) for k in range(2 if seq == "a" else 1)
    ]
    tracked = assign_tracks(people[::-1], lambda: PoseTracker(TrackerConfig(), itertools.count().__next__))
    ids = {(p.sequence, p.frame, int(p.box[1])): p.track_id for p in tracked}
    assert len(tracked) == len(people)
    # frames reach the tracker in order, each video with a tracker of its own counting from 0
    first, second = ({ids[("a", t, y)] for t in range(6)} for y in (20, 80))
    assert len(first) == len(second) == 1 and first | second == {0, 1}
    assert {ids[("b", t, 20)] for t in range(6)} == {0}


@pytest.mark.slow
def test_predict_command_tracks_detections(synth_posetrack: Path, tmp_path: Path) -> None:
    gt_dir = synth_posetrack / "annotations" / "val"
    detections = [
        {"image_id": p["image_id"], "bbox": p["bbox"], "score": 0.9, "category_id": 1}
        for path in sorted(gt_dir.glob("*.json"))
        for p in json.loads(path.read_text())["annotations"]
    ]
    detections.append({**detections[0], "score": 0.1})  # below the default threshold of 0.2
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps(detections))
    out = tmp_path / "pred"
    args = [
        "predict",
        "posetrack",
        "--model",
        "tdmi-tiny",
        "--data",
        str(synth_posetrack),
        "--boxes",
        str(boxes),
        "--random-weights",
    ]
    assert main([*args, "--out", str(out), "--num-workers", "0", "--device", "cpu"]) == 0
    written = [a for path in sorted(out.glob("*.json")) for a in json.loads(path.read_text())["annotations"]]
    assert len(written) == len(detections) - 1
    assert all(isinstance(a["track_id"], int) and a["track_id"] >= 0 for a in written)
    # the ear slots of the PoseTrack layout are not evaluated: written as missing
    assert all(a["keypoints"][9:15] == [0.0] * 6 and a["scores"][3:5] == [0.0, 0.0] for a in written)
