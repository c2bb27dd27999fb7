"""Data for training and evaluation: datasets, clip sampling, augmentation, synthetic video."""

from model.data.clips import clip_indices
from model.data.datasets import CocoKeypoints, PoseTrackClips
from model.data.detections import read_detections
from model.data.posetrack import load_sequences
from model.data.transforms import AugmentConfig

__all__ = [
    "AugmentConfig",
    "CocoKeypoints",
    "PoseTrackClips",
    "clip_indices",
    "load_sequences",
    "read_detections",
]
