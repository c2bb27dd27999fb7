"""COCO keypoint AP through pycocotools on the mmpose COCO sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tdmi.model.evaluation import evaluate_coco
from tdmi.model.evaluation.coco import evaluate_coco_results
from tdmi.service.cli import main

DATA = Path(__file__).parents[3] / "data" / "coco_sample"
GT = DATA / "test_coco.json"
DETECTIONS = DATA / "test_coco_det_AP_H_56.json"


def _ground_truth_as_results(score: float = 1.0) -> list[dict]:
    gt = json.loads(GT.read_text())
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": score}
        for a in gt["annotations"]
        if a["num_keypoints"] > 0
    ]


def test_ground_truth_as_predictions_scores_1(tmp_path: Path) -> None:
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(_ground_truth_as_results()))
    metrics = evaluate_coco(GT, pred)
    assert metrics.AP == metrics.AP50 == metrics.AR == 1.0
    assert set(metrics.to_dict().values()) <= {1.0, -1.0}  # -1: no ground truth of that size


def test_moving_one_person_costs_ap() -> None:
    gt = json.loads(GT.read_text())
    results = _ground_truth_as_results()
    exact = evaluate_coco_results(gt, results)
    moved = np.array(results[0]["keypoints"], float).reshape(17, 3)
    moved[:, :2] += 200  # far from everyone: a false positive and a missed person
    results[0] = {**results[0], "keypoints": moved.ravel().tolist()}
    worse = evaluate_coco_results(gt, results)
    assert 0.0 < worse.AP < exact.AP == 1.0
    assert worse.AR < 1.0


def test_detection_results_have_no_keypoints_and_are_refused() -> None:
    detections = json.loads(DETECTIONS.read_text())
    assert {"image_id", "category_id", "bbox", "score"} <= detections[0].keys()  # COCO results format
    with pytest.raises(ValueError, match="'keypoints' must be 51 numbers"):
        evaluate_coco(GT, DETECTIONS)


def test_bad_predictions_raise_one_readable_line(tmp_path: Path) -> None:
    gt = json.loads(GT.read_text())
    with pytest.raises(ValueError, match="non-empty JSON list"):
        evaluate_coco_results(gt, [])
    stray = {**_ground_truth_as_results()[0], "image_id": 123456789}
    with pytest.raises(ValueError, match="image_id 123456789 is not in the ground truth"):
        evaluate_coco_results(gt, [stray])
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        evaluate_coco(GT, broken)


def test_cli_prints_json(tmp_path: Path, capsys) -> None:
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(_ground_truth_as_results()))
    assert main(["eval", "coco", "--gt", str(GT), "--pred", str(pred), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)  # pycocotools' own prints do not reach stdout
    assert data["AP"] == 1.0 and len(data) == 10
    assert main(["eval", "coco", "--gt", str(GT), "--pred", str(DETECTIONS)]) == 2
    assert "tdmi: error: prediction 0: 'keypoints' must be 51 numbers" in capsys.readouterr().err
