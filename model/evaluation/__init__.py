"""Evaluation: PoseTrack (poseval's AP and MOTA, reproduced exactly) and COCO keypoint AP."""

from model.evaluation.coco import CocoMetrics, evaluate_coco
from model.evaluation.posetrack import evaluate_posetrack, evaluate_posetrack_sequences
from model.evaluation.posetrack_io import POSEVAL_JOINTS
from model.evaluation.posetrack_metrics import COLUMNS, JointValues, PoseTrackMetrics, TrackingMetrics

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
