"""Evaluation: PoseTrack (poseval's AP and MOTA, reproduced exactly) and COCO keypoint AP."""

from tdmi.model.evaluation.coco import CocoMetrics, evaluate_coco
from tdmi.model.evaluation.posetrack import evaluate_posetrack, evaluate_posetrack_sequences
from tdmi.model.evaluation.posetrack_io import POSEVAL_JOINTS
from tdmi.model.evaluation.posetrack_metrics import COLUMNS, JointValues, PoseTrackMetrics, TrackingMetrics

__all__ = [
    "COLUMNS",
    "POSEVAL_JOINTS",
    "CocoMetrics",
    "JointValues",
    "PoseTrackMetrics",
    "TrackingMetrics",
    "evaluate_coco",
    "evaluate_posetrack",
    "evaluate_posetrack_sequences",
]
