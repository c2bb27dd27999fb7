"""The inference worker: frames up once, crops, model, decoding on the device, small arrays back.

A video job's frame runs in a forward of its own, so that its result never depends on which
frames shared its batch (see ``_forward_groups``). Frames in feature-reuse mode
(``FrameWork.features`` set) take a second path: only the crops whose backbone features are not
yet in their stream's cache go through the backbone, the rest of the network runs on the cached
stacks (see ``service.inference.feature_cache``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch

from tdmi.model.codec import decode_heatmaps
from tdmi.model.inputs import normalize
from tdmi.model.presets import ModelPreset
from tdmi.service.inference.backends import Backend
from tdmi.service.inference.crops import crop_clips, input_to_image_affines, upload_frame
from tdmi.service.inference.feature_cache import FeatureCache, FeatureKey, FeatureRequest, split_network
from tdmi.service.inference.work import FrameWork, PoseArrays

__all__ = ["InferenceWorker", "bucket_sizes"]

StageTimer = Callable[[str, float], None]


def _request(work: FrameWork) -> FeatureRequest:
    if work.features is None:
        raise ValueError(f"frame {work.frame_index} of stream {work.stream_id} has no feature request")
    return work.features


def _forward_groups(works: Sequence[FrameWork]) -> list[list[FrameWork]]:
    """The batch's frames as the model runs them: live frames together, each job frame alone.

    A batch's size changes the last bits of a clip's result (a lone clip differs from one padded
    beside others, on the CPU too), and which frames meet in a batch depends on timing. A video
    job's frame therefore runs in a forward of its own, padded to the bucket of its own person
    count, so its numbers depend on its input only; live frames share one forward, for speed.
    """
    live = [w for w in works if w.live]
    return ([live] if live else []) + [[w] for w in works if not w.live]


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
        feature_reuse: bool = False,
    ):
        self.preset = preset
        self.backend = backend
        self.device = device
        self.buckets = bucket_sizes(max_batch)
        self._on_stage = on_stage or (lambda stage, seconds: None)
        # feature reuse runs the network in two halves: eager torch only (raises otherwise)
        self.split = split_network(backend) if feature_reuse else None
        self.backbone_crops = 0  # crops the backbone has run on: what feature reuse saves

    def warm_up(self) -> None:
        """Run every bucket once so that no request pays for first-call compilation."""
        for size in self.buckets:
            inputs = torch.zeros(self.preset.input_shape(size), device=self.device)
            self.backend(inputs)
            if self.split is not None:
                self.split.frame_features(inputs[:, 0])
                stages = self.split.frame_features(inputs.flatten(0, 1))
                self.split.heatmaps([f.unflatten(0, inputs.shape[:2]) for f in stages])
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
        else:
            heatmaps = self._reused_heatmaps(works)

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
        self.backbone_crops += len(inputs) * self.preset.num_frames
        self._lap("crop", start)

        start = time.perf_counter()
        heatmaps = torch.cat([self._forward(chunk) for chunk in inputs.split(self.buckets[-1])])
        self._lap("model", start)
        return heatmaps

    def _reused_heatmaps(self, works: Sequence[FrameWork]) -> torch.Tensor:
        """Backbone runs for the (anchor, frame) crops not yet cached, then the rest on the stacks."""
        if self.split is None:
            raise ValueError("this worker was not started with feature_reuse")
        start = time.perf_counter()
        requests = [_request(work) for work in works]
        missing: dict[tuple[int, FeatureKey], tuple[FeatureCache, FeatureKey, FrameWork, np.ndarray]] = {}
        for work, request in zip(works, requests):
            for anchor_id, box in zip(request.anchor_ids, work.boxes):
                for frame in work.clip:
                    assert isinstance(frame, int), "feature reuse keys frames by their position"
                    key = (anchor_id, frame)
                    if key not in request.cache:
                        missing.setdefault((id(request.cache), key), (request.cache, key, work, box))
        entries = list(missing.values())
        if entries:
            frames: dict[Hashable, torch.Tensor] = {}
            for _, (_, frame), work, _ in entries:
                if (work.stream_id, frame) not in frames:
                    frames[(work.stream_id, frame)] = upload_frame(work.images[frame], self.device)
            boxes = np.stack([box for *_, box in entries]).astype(np.float64)
            affines = torch.from_numpy(input_to_image_affines(boxes, self.preset.input_size)).to(self.device)
            keys = [[(work.stream_id, frame)] for _, (_, frame), work, _ in entries]
            crops = normalize(crop_clips(frames, keys, affines, self.preset.input_size))[:, 0]
        self._lap("crop", start)

        start = time.perf_counter()
        if entries:
            done = 0
            for parts, real in self._chunks([crops]):
                stages = self.split.frame_features(parts[0])
                for i, (cache, key, _, _) in enumerate(entries[done : done + real]):
                    cache.put(key, [f[i].clone() for f in stages])  # its own storage, freed on its own
                done += real
            self.backbone_crops += done
        frames_used = [
            request.cache.get((anchor_id, frame))  # type: ignore[arg-type]
            for work, request in zip(works, requests)
            for anchor_id in request.anchor_ids
            for frame in work.clip
        ]
        clip_shape = (len(frames_used) // len(works[0].clip), len(works[0].clip))
        stacks = [
            torch.stack([f[s] for f in frames_used]).unflatten(0, clip_shape)
            for s in range(len(frames_used[0]))
        ]
        heatmaps = torch.cat([self.split.heatmaps(parts)[:real] for parts, real in self._chunks(stacks)])
        self._lap("model", start)
        latest = {id(request.cache): request for request in requests}
        for request in latest.values():  # a stream's frames come in order: its latest one decides
            request.cache.keep(set(request.anchor_ids), request.keep_from)
        return heatmaps

    def _chunks(self, tensors: list[torch.Tensor]) -> Iterator[tuple[list[torch.Tensor], int]]:
        """Slices of at most the largest bucket, zero-padded up to a bucket size, with their real size."""
        step = self.buckets[-1]
        for begin in range(0, len(tensors[0]), step):
            parts = [t[begin : begin + step] for t in tensors]
            real = len(parts[0])
            size = next(b for b in self.buckets if b >= real)
            if size > real:
                parts = [torch.cat((p, p.new_zeros((size - real, *p.shape[1:])))) for p in parts]
            yield parts, real

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
