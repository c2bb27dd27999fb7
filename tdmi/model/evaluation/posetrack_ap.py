"""Per-joint average precision exactly as poseval computes it (``evaluateAP.computeMetrics``).

All predicted joints of all frames are ranked by score; precision and recall follow each rank,
and AP is the area under the precision envelope over the recall steps (the VOC 2010+ rule).
Quirks kept on purpose: a joint without any prediction gets AP, precision and recall 0 (and
that 0 enters the total); a joint with predictions but no ground truth gets nan (left out of the
total); the total is the mean over the joints that are not nan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tdmi.model.evaluation.posetrack_io import NUM_JOINTS
from tdmi.model.evaluation.posetrack_match import FrameMatch

__all__ = ["joint_ap", "nan_mean", "precision_recall", "voc_ap"]


def precision_recall(
    scores: np.ndarray, labels: np.ndarray, num_positive: float
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection, best score first (poseval's ``computeRPC``)."""
    order = np.array(scores).argsort()[::-1]  # numpy's default sort, as poseval: ties rank alike
    true_positives = np.cumsum(labels[order] == 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = 1.0 * true_positives / num_positive
    precision = 1.0 * true_positives / np.arange(1, len(order) + 1)
    return precision, recall


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope, summed where recall changes."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def nan_mean(values: np.ndarray) -> float:
    """Mean of the values that are not nan (nan when none is)."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def joint_ap(matches: Sequence[FrameMatch]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, precision and recall (percent, at the last rank) per joint over the given frames."""
    ap, precision, recall = (np.zeros(NUM_JOINTS) for _ in range(3))
    num_gt = np.zeros(NUM_JOINTS)
    for m in matches:
        num_gt += m.num_gt
    for j in range(NUM_JOINTS):
        scores = np.concatenate([np.zeros(0)] + [m.scores[j] for m in matches])
        labels = np.concatenate([np.zeros(0, dtype=bool)] + [m.labels[j] for m in matches])
        if len(scores) == 0:
            continue
        pre, rec = precision_recall(scores, labels, num_gt[j])
        with np.errstate(invalid="ignore"):
            ap[j] = voc_ap(rec, pre) * 100
        precision[j] = pre[-1] * 100
        recall[j] = rec[-1] * 100
    return ap, precision, recall
