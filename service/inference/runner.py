"""The model runner: frames up once, crops, model, decoding on the device, small arrays back.

A video job's frame runs in a forward of its own, so that its result never depends on which
frames shared its batch (see ``_forward_groups``). Frames in feature-reuse mode
(``FrameWork.features`` set) take the ``FeatureReuse`` path: only the crops whose backbone
features are not yet in their stream's cache go through the backbone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from tdmi.model.codec import decode_heatmaps
from tdmi.model.inputs import normalize
from tdmi.model.presets import ModelPreset
from tdmi.service.inference.backends import Backend
from tdmi.service.inference.buckets import bucket_chunks, bucket_sizes
from tdmi.service.inference.crops import crop_clips, input_to_image_affines, upload_frame
from tdmi.service.inference.feature_cache import split_network
from tdmi.service.inference.feature_reuse import FeatureReuse
from tdmi.service.inference.work import FrameWork, PoseArrays

__all__ = ["ModelRunner"]

StageTimer = Callable[[str, float], None]


def _forward_groups(works: Sequence[FrameWork]) -> list[list[FrameWork]]:
    """The batch's frames as the model runs them: live frames together, each job frame alone.

    A batch's size changes the last bits of a clip's result (a lone clip differs from one padded
    beside others, on the CPU too), and which frames meet in a batch depends on timing. A video
    job's frame therefore runs in a forward of its own, padded to the bucket of its own person
    count, so its numbers depend on its input only; live frames share one forward, for speed.
    """
    live = [w for w in works if w.live]
    return ([live] if live else []) + [[w] for w in works if not w.live]


class ModelRunner:
    """Runs batches of ``FrameWork`` for one model; called from one thread at a time."""

    def __init__(
        self,
        preset: ModelPreset,
        backend: Backend,
        device: torch.device,
        max_batch: int,
        on_stage: StageTimer | None = None,
        feature_reuse: bool = False,
    ):
        self.preset = preset
        self.backend = backend
        self.device = device
        self.buckets = bucket_sizes(max_batch)
        self._on_stage = on_stage or (lambda stage, seconds: None)
        self._exact_crops = 0
        # feature reuse runs the network in two halves: eager torch only (raises otherwise)
        self.reuse = (
            FeatureReuse(split_network(backend), preset, device, self.buckets, self._lap)
            if feature_reuse
            else None
        )

    @property
    def backbone_crops(self) -> int:
        """Crops the backbone has run on: what feature reuse saves."""
        return self._exact_crops + (self.reuse.backbone_crops if self.reuse is not None else 0)

    def warm_up(self) -> None:
        """Run every bucket once so that no request pays for first-call compilation."""
        for size in self.buckets:
            inputs = torch.zeros(self.preset.input_shape(size), device=self.device)
            self.backend(inputs)
            if self.reuse is not None:
                self.reuse.warm_up(inputs)
        self._sync()

    def run(self, batch: Sequence[FrameWork]) -> list[PoseArrays]:
        """Keypoints for every frame of ``batch`` (one ``PoseArrays`` per frame, same order)."""
        results = {
            id(w): PoseArrays(np.zeros((0, self.preset.layout.num_joints, 3), np.float32)) for w in batch
        }
        exact = [w for w in batch if w.size and w.features is None]
        reused = [w for w in batch if w.size and w.features is not None]
        for works in (exact, reused):
            for group in _forward_groups(works):
                for work, keypoints in zip(group, self._keypoints(group)):
                    results[id(work)] = PoseArrays(keypoints)
        return [results[id(w)] for w in batch]

    def _keypoints(self, works: Sequence[FrameWork]) -> list[np.ndarray]:
        """Keypoints of frames that all take the same path (exact, or all with feature reuse)."""
        boxes = np.concatenate([w.boxes for w in works]).astype(np.float64)
        affines = torch.from_numpy(input_to_image_affines(boxes, self.preset.input_size)).to(self.device)
        if works[0].features is None:
            heatmaps = self._exact_heatmaps(works, affines)
        elif self.reuse is None:
            raise ValueError("this runner was not started with feature_reuse")
        else:
            heatmaps = self.reuse.heatmaps(works)

        start = time.perf_counter()
        coords, scores = decode_heatmaps(heatmaps.float())
        stride_x = self.preset.input_size[1] / heatmaps.shape[3]
        stride_y = self.preset.input_size[0] / heatmaps.shape[2]
        points = coords * torch.tensor([stride_x, stride_y], device=coords.device)
        image_xy = points @ affines[:, :, :2].float().transpose(1, 2) + affines[:, None, :, 2].float()
        keypoints = torch.cat((image_xy, scores.unsqueeze(2)), dim=2).cpu().numpy()
        self._lap("post", start)
        splits = np.cumsum([w.size for w in works])[:-1]
        return np.split(keypoints, splits)

    def _exact_heatmaps(self, works: Sequence[FrameWork], affines: torch.Tensor) -> torch.Tensor:
        """Every clip cropped with its key frame's box and run through the whole network."""
        start = time.perf_counter()
        frames: dict[Hashable, torch.Tensor] = {}
        clips: list[list[Hashable]] = []
        for work in works:
            for key, image in work.images.items():
                full_key = (work.stream_id, key)
                if full_key not in frames:
                    frames[full_key] = upload_frame(image, self.device)
            clips.extend([[(work.stream_id, k) for k in work.clip]] * work.size)
        inputs = normalize(crop_clips(frames, clips, affines, self.preset.input_size))
        if not self.preset.multi_frame:
            inputs = inputs[:, 0]
        self._exact_crops += len(inputs) * self.preset.num_frames
        self._lap("crop", start)

        start = time.perf_counter()
        heatmaps = torch.cat(
            [self.backend(parts[0])[:real] for parts, real in bucket_chunks([inputs], self.buckets)]
        )
        self._lap("model", start)
        return heatmaps

    def _lap(self, stage: str, start: float) -> None:
        self._sync()
        self._on_stage(stage, time.perf_counter() - start)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
