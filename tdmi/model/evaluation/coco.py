"""COCO keypoint AP/AR (OKS) for single-frame models, through pycocotools' own COCOeval.

Predictions are in the COCO results format: a JSON list of
``{"image_id", "category_id", "keypoints": [x1, y1, v1, ... 17 joints], "score"}``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tdmi.model.jsonfile import read_json

__all__ = ["CocoMetrics", "evaluate_coco", "evaluate_coco_results"]

NUM_COCO_KEYPOINTS = 17  # COCOeval's OKS sigmas are those of the 17 COCO joints


@dataclass(frozen=True)
class CocoMetrics:
    """COCOeval's ten keypoint numbers (fractions in 0..1; -1 where there is no ground truth)."""

    AP: float
    AP50: float
    AP75: float
    AP_M: float
    AP_L: float
    AR: float
    AR50: float
    AR75: float
    AR_M: float
    AR_L: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def table(self) -> str:
        names = list(self.to_dict())
        return "\n".join(
            [" | ".join(f"{n:>5}" for n in names), " | ".join(f"{v:5.3f}" for v in self.to_dict().values())]
        )


def _check_results(results: Any, image_ids: set[Any]) -> None:
    if not isinstance(results, list) or not results:
        raise ValueError("predictions must be a non-empty JSON list of COCO keypoint results")
    for n, r in enumerate(results):
        if not isinstance(r, Mapping) or not {"image_id", "category_id", "score"} <= r.keys():
            raise ValueError(f"prediction {n}: needs image_id, category_id, keypoints and score")
        keypoints = r.get("keypoints")
        if not isinstance(keypoints, list) or len(keypoints) != 3 * NUM_COCO_KEYPOINTS:
            raise ValueError(
                f"prediction {n}: 'keypoints' must be {3 * NUM_COCO_KEYPOINTS} numbers"
                " (a detection-only result has none)"
            )
        if r["image_id"] not in image_ids:
            raise ValueError(f"prediction {n}: image_id {r['image_id']!r} is not in the ground truth")


def evaluate_coco_results(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> CocoMetrics:
    """Evaluate results (a list) against a COCO keypoint ground-truth dict, both in memory."""
    if not isinstance(gt, Mapping) or not {"images", "annotations", "categories"} <= gt.keys():
        raise ValueError("ground truth must be a COCO dict with images, annotations and categories")
    _check_results(results, {image["id"] for image in gt["images"]})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports progress on stdout
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(dict(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return CocoMetrics(*(float(v) for v in evaluator.stats))


def evaluate_coco(gt_file: Path | str, pred_file: Path | str) -> CocoMetrics:
    """Evaluate a COCO results file against a COCO person-keypoints annotation file."""
    gt = read_json(Path(gt_file), "ground-truth file")
    results = read_json(Path(pred_file), "prediction file")
    return evaluate_coco_results(gt, results)
