"""Data for training and evaluation: datasets, clip sampling, augmentation, synthetic video."""

from tdmi.model.data.clips import clip_indices
from tdmi.model.data.datasets import CocoKeypoints, PoseTrackClips
from tdmi.model.data.detections import read_detections
from tdmi.model.data.posetrack import load_sequences
from tdmi.model.data.transforms import AugmentConfig

__all__ = [
    "AugmentConfig",
    "CocoKeypoints",
    "PoseTrackClips",
    "clip_indices",
    "load_sequences",
    "read_detections",
]
