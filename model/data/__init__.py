"""Data for training and evaluation: datasets, clip sampling, augmentation, synthetic video."""

from model.data.clips import clip_indices

__all__ = ["clip_indices"]
