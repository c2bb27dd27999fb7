"""The inference worker: frames up once, crops, model, decoding on the device, small arrays back."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from model.codec import decode_heatmaps
from model.inputs import normalize
from model.presets import ModelPreset
from service.inference.backends import Backend
from service.inference.crops import crop_clips, input_to_image_affines, upload_frame
from service.inference.work import FrameWork, PoseArrays

__all__ = ["InferenceWorker", "bucket_sizes"]

StageTimer = Callable[[str, float], None]


def bucket_sizes(max_batch: int) -> list[int]:
    """Batch sizes the model ever sees: powers of two below ``max_batch``, and ``max_batch``."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch:
        sizes.append(sizes[-1] * 2)
    return sorted({*sizes, max_batch})


class InferenceWorker:
    """Runs batches of ``FrameWork`` for one model; called from one thread at a time."""

    def __init__(
        self,
        preset: ModelPreset,
        backend: Backend,
        device: torch.device,
        max_batch: int,
        on_stage: StageTimer | None = None,
    ):
        self.preset = preset
        self.backend = backend
        self.device = device
        self.buckets = bucket_sizes(max_batch)
        self._on_stage = on_stage or (lambda stage, seconds: None)

    def warm_up(self) -> None:
        """Run every bucket once so that no request pays for first-call compilation."""
        for size in self.buckets:
            self.backend(torch.zeros(self.preset.input_shape(size), device=self.device))
        self._sync()

    def run(self, batch: Sequence[FrameWork]) -> list[PoseArrays]:
        """Keypoints for every frame of ``batch`` (one ``PoseArrays`` per frame, same order)."""
        works = [w for w in batch if w.size]
        results = {
            id(w): PoseArrays(np.zeros((0, self.preset.layout.num_joints, 3), np.float32)) for w in batch
        }
        if works:
            for work, keypoints in zip(works, self._keypoints(works)):
                results[id(work)] = PoseArrays(keypoints)
        return [results[id(w)] for w in batch]

    def _keypoints(self, works: Sequence[FrameWork]) -> list[np.ndarray]:
        start = time.perf_counter()
        frames: dict[Hashable, torch.Tensor] = {}
        clips: list[list[Hashable]] = []
        for work in works:
            for key, image in work.images.items():
                full_key = (work.stream_id, key)
                if full_key not in frames:
                    frames[full_key] = upload_frame(image, self.device)
            clips.extend([[(work.stream_id, k) for k in work.clip]] * work.size)
        boxes = np.concatenate([w.boxes for w in works]).astype(np.float64)
        affines = torch.from_numpy(input_to_image_affines(boxes, self.preset.input_size)).to(self.device)
        inputs = normalize(crop_clips(frames, clips, affines, self.preset.input_size))
        if not self.preset.multi_frame:
            inputs = inputs[:, 0]
        self._lap("crop", start)

        start = time.perf_counter()
        heatmaps = torch.cat([self._forward(chunk) for chunk in inputs.split(self.buckets[-1])])
        self._lap("model", start)

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

    def _forward(self, chunk: torch.Tensor) -> torch.Tensor:
        """Heatmaps of at most the largest bucket of clips, zero-padded up to a bucket size."""
        real = len(chunk)
        size = next(b for b in self.buckets if b >= real)
        if size > real:
            chunk = torch.cat((chunk, chunk.new_zeros((size - real, *chunk.shape[1:]))))
        return self.backend(chunk)[:real]

    def _lap(self, stage: str, start: float) -> None:
        self._sync()
        self._on_stage(stage, time.perf_counter() - start)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
