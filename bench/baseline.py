"""The naive baseline: how research code serves one request, for the service to be measured against.

One clip at a time: for each person, its 2d+1 crops are cut on the CPU with ``cv2.warpAffine``
(the training warp), normalised in numpy, sent to the device, run through eager fp32, and the
heatmaps decoded and mapped back to the image. No batching across persons or streams, no
on-device crops, no reduced precision: the same arithmetic as the service, served naively.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from tdmi.model.codec import decode_heatmaps
from tdmi.model.geometry import apply_affine, box_to_crop, crop_affine, invert_affine
from tdmi.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from tdmi.model.presets import ModelPreset

__all__ = ["NaiveBaseline"]

_MEAN = np.array(IMAGENET_MEAN, np.float32) * 255.0
_STD = np.array(IMAGENET_STD, np.float32) * 255.0


class NaiveBaseline:
    """Keypoints of one frame's persons, one person (one clip) at a time."""

    def __init__(self, network: nn.Module, preset: ModelPreset, device: torch.device):
        self.network = network.eval().to(device)
        self.preset = preset
        self.device = device

    @torch.inference_mode()
    def keypoints(self, clip_frames: Sequence[np.ndarray], boxes: np.ndarray) -> np.ndarray:
        """(K, J, 3) x, y, score in image pixels for the key frame's ``boxes`` (K, 4) xyxy.

        ``clip_frames`` are the clip's RGB uint8 frames, t-d .. t+d (one frame for HRNet presets).
        """
        h, w = self.preset.input_size
        out = []
        for box in boxes:
            affine = crop_affine(box_to_crop(box, w / h), (w, h))
            crops = [cv2.warpAffine(frame, affine, (w, h), flags=cv2.INTER_LINEAR) for frame in clip_frames]
            pixels = (np.stack(crops).astype(np.float32) - _MEAN) / _STD  # (T, h, w, 3)
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(self.device)
            x = x.unsqueeze(0) if self.preset.multi_frame else x[:1]
            heatmaps = self.network(x)
            coords, scores = decode_heatmaps(heatmaps.float())
            stride = np.array([w / heatmaps.shape[3], h / heatmaps.shape[2]])
            points = apply_affine(coords[0].cpu().numpy() * stride, invert_affine(affine))
            out.append(np.concatenate([points, scores[0].cpu().numpy()[:, None]], axis=1))
        return np.stack(out).astype(np.float32)

    def person_frames_per_second(
        self, clips: Sequence[Sequence[np.ndarray]], boxes: np.ndarray, repeats: int = 3
    ) -> float:
        """Persons per second over ``clips`` (each a frame's clip, with the same ``boxes``): the
        median over ``repeats`` passes after one warm-up pass."""
        rates = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            for clip in clips:
                self.keypoints(clip, boxes)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if i:
                rates.append(len(clips) * len(boxes) / (time.perf_counter() - start))
        return float(np.median(rates))
