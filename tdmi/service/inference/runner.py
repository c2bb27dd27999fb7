"""The model runner: frames up once, crops, model, decoding on the device, small arrays back.

A video job's frame runs in a forward of its own, so that its result never depends on which
frames shared its batch (see ``_forward_groups``). Frames in feature-reuse mode
(``FrameWork.features`` set) take the ``FeatureReuse`` path: only the crops whose backbone
features are not yet in their stream's cache go through the backbone.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from tdmi.model.codec import decode_heatmaps
from tdmi.model.inputs import normalize
from tdmi.model.presets import ModelPreset
from tdmi.service.inference.backends import Backend
from tdmi.service.inference.batch_times import BatchTimes
from tdmi.service.inference.buckets import bucket_chunks, bucket_sizes, run_sizes
from tdmi.service.inference.crops import cut_clips, input_to_image_affines
from tdmi.service.inference.feature_cache import split_network
from tdmi.service.inference.feature_reuse import FeatureReuse
from tdmi.service.inference.work import FrameWork, PoseArrays
from tdmi.service.metrics import StageTimer

__all__ = ["ModelRunner", "PreparedBatch"]


def _forward_groups(works: Sequence[FrameWork]) -> list[list[FrameWork]]:
    """The batch's frames as the model runs them: live frames together, each job frame alone.

    A batch's size changes the last bits of a clip's result (a lone clip differs from one padded
    beside others, on the CPU too), and which frames meet in a batch depends on timing. A video
    job's frame therefore runs in a forward of its own, padded to the bucket of its own person
    count, so its numbers depend on its input only; live frames share one forward, for speed.
    """
    live = [w for w in works if w.live]
    return ([live] if live else []) + [[w] for w in works if not w.live]


@dataclass
class _Group:
    """Frames of a batch that take the same path (exact, or feature reuse), on their way."""

    works: list[FrameWork]
    affines: torch.Tensor  # (N, 2, 3) model-input pixels -> image pixels, one per clip
    inputs: torch.Tensor | None = None  # exact path: the crops, until the model has run
    heatmaps: torch.Tensor | None = None


@dataclass
class PreparedBatch:
    """A batch between the runner's stages (see ``InferenceEngine``)."""

    batch: list[FrameWork]
    groups: list[_Group]


@dataclass(frozen=True)
class _SideStreams:
    """On a GPU, the prepare and finish stages queue their kernels on streams of their own, so that
    they overlap the model's (on the default stream) and can wait for their own work only."""

    prepare: torch.cuda.Stream | None = None
    finish: torch.cuda.Stream | None = None

    @classmethod
    def on(cls, device: torch.device) -> _SideStreams:
        if device.type != "cuda":
            return cls()
        return cls(torch.cuda.Stream(device), torch.cuda.Stream(device))


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
        self.buckets = run_sizes(max_batch, backend.fixed_shapes)
        self.warm_sizes = bucket_sizes(max_batch)  # every bucket; a few of the sizes otherwise
        self.model_times = BatchTimes(self.buckets)  # what the batcher's latency cap reads
        self._on_stage = on_stage or (lambda stage, seconds: None)
        self._exact_crops = 0
        self._streams = _SideStreams.on(device)
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
        """Run every bucket once so that no request pays for first-call compilation; its time is a
        first (high) estimate for the latency cap, which the batches' own times then correct (the
        sizes between the warmed ones are estimated from their neighbours, see ``BatchTimes``)."""
        for size in self.warm_sizes:
            inputs = torch.zeros(self.preset.input_shape(size), device=self.device)
            start = time.perf_counter()
            self.backend(inputs)
            self._sync()
            self.model_times.observe(size, time.perf_counter() - start)
            if self.reuse is not None:
                self.reuse.warm_up(inputs)
        self._sync()

    def run(self, batch: Sequence[FrameWork]) -> list[PoseArrays]:
        """Keypoints for every frame of ``batch`` (one ``PoseArrays`` per frame, same order)."""
        return self.finish(self.forward(self.prepare(batch)))

    def prepare(self, batch: Sequence[FrameWork]) -> PreparedBatch:
        """Stage 1 (any thread): crop boxes to affines, and the exact path's crops, normalised.

        Feature-reuse frames are cropped in the model stage: which crops their cache lacks is
        only known once the batches before them have run."""
        groups = []
        exact = [w for w in batch if w.size and w.features is None]
        reused = [w for w in batch if w.size and w.features is not None]
        with self._on(self._streams.prepare):
            for path, works in (("exact", exact), ("reuse", reused)):
                for frames in _forward_groups(works):
                    boxes = np.concatenate([w.boxes for w in frames]).astype(np.float64)
                    affines = input_to_image_affines(boxes, self.preset.input_size)
                    group = _Group(frames, torch.from_numpy(affines).to(self.device))
                    if path == "exact":
                        group.inputs = self._exact_inputs(frames, group.affines)
                    groups.append(group)
        if self._streams.prepare is not None:
            self._streams.prepare.synchronize()  # the model stage reads it all on its own stream
        return PreparedBatch(list(batch), groups)

    def forward(self, prepared: PreparedBatch) -> PreparedBatch:
        """Stage 2 (the device thread): heatmaps of every group."""
        for group in prepared.groups:
            if group.inputs is not None:
                start = time.perf_counter()
                chunks = bucket_chunks([group.inputs], self.buckets)
                group.heatmaps = torch.cat([self.backend(parts[0])[:real] for parts, real in chunks])
                self.model_times.observe(len(group.inputs), self._timed("model", start))
                group.inputs = None  # the crops are not needed any more
            elif self.reuse is None:
                raise ValueError("this runner was not started with feature_reuse")
            else:
                group.heatmaps = self.reuse.heatmaps(group.works)
        return prepared

    def finish(self, prepared: PreparedBatch) -> list[PoseArrays]:
        """Stage 3 (any thread): heatmaps to keypoints in image pixels, one ``PoseArrays`` per frame."""
        results = {
            id(w): PoseArrays(np.zeros((0, self.preset.layout.num_joints, 3), np.float32))
            for w in prepared.batch
        }
        with self._on(self._streams.finish):
            for group in prepared.groups:
                if group.heatmaps is None:
                    raise RuntimeError("finish before forward: the batch has no heatmaps")
                for work, keypoints in zip(group.works, self._keypoints(group)):
                    results[id(work)] = PoseArrays(keypoints)
        return [results[id(w)] for w in prepared.batch]

    def _keypoints(self, group: _Group) -> list[np.ndarray]:
        """Keypoints of one group's frames from its heatmaps and crop affines."""
        assert group.heatmaps is not None
        heatmaps, affines = group.heatmaps, group.affines
        start = time.perf_counter()
        coords, scores = decode_heatmaps(heatmaps.float())
        stride_x = self.preset.input_size[1] / heatmaps.shape[3]
        stride_y = self.preset.input_size[0] / heatmaps.shape[2]
        points = coords * torch.tensor([stride_x, stride_y], device=coords.device)
        image_xy = points @ affines[:, :, :2].float().transpose(1, 2) + affines[:, None, :, 2].float()
        keypoints = torch.cat((image_xy, scores.unsqueeze(2)), dim=2).cpu().numpy()
        self._timed("post", start, self._streams.finish)
        splits = np.cumsum([w.size for w in group.works])[:-1]
        return np.split(keypoints, splits)

    def _exact_inputs(self, works: Sequence[FrameWork], affines: torch.Tensor) -> torch.Tensor:
        """Every clip cropped with its key frame's box, normalised: the whole network's input."""
        start = time.perf_counter()
        clips: list[list[Hashable]] = [
            [(w.stream_id, k) for k in w.clip] for w in works for _ in range(w.size)
        ]
        images: dict[Hashable, np.ndarray] = {
            (w.stream_id, k): im for w in works for k, im in w.images.items()
        }
        crops = cut_clips(images, clips, affines.cpu().numpy(), self.preset.input_size, self.device)
        inputs = normalize(crops)
        if not self.preset.multi_frame:
            inputs = inputs[:, 0]
        self._exact_crops += len(inputs) * self.preset.num_frames
        self._timed("crop", start, self._streams.prepare)
        return inputs

    def _lap(self, stage: str, start: float) -> None:
        """Record a stage's time since ``start`` (the feature-reuse path's timer)."""
        self._timed(stage, start)

    def _timed(self, stage: str, start: float, stream: torch.cuda.Stream | None = None) -> float:
        """Record and return a stage's time since ``start``: on a GPU once its work is done (its own
        stream's, if given, so that a side stage does not wait for the model running meanwhile)."""
        if stream is not None:
            stream.synchronize()
        else:
            self._sync()
        seconds = time.perf_counter() - start
        self._on_stage(stage, seconds)
        return seconds

    @staticmethod
    def _on(stream: torch.cuda.Stream | None) -> AbstractContextManager[object]:
        return torch.cuda.stream(stream) if stream is not None else nullcontext()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
