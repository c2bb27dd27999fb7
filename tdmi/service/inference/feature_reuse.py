"""The feature-reuse path of ``ModelRunner``: the backbone runs only on the (anchor, frame) crops
not yet in their stream's ``FeatureCache``; the rest of TDMI runs on the cached stacks.

See ``tdmi.service.inference.feature_cache`` for why the features of a frame cropped with an anchor
serve every window that holds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from tdmi.model.inputs import normalize
from tdmi.model.presets import ModelPreset
from tdmi.service.inference.buckets import bucket_chunks
from tdmi.service.inference.crops import cut_clips, input_to_image_affines
from tdmi.service.inference.feature_cache import FeatureCache, FeatureKey, FeatureRequest, SplitNetwork
from tdmi.service.inference.work import FrameWork

__all__ = ["FeatureReuse"]

# records a stage's time since its start: (stage, start on time.perf_counter); the runner's, which
# waits for the device's work first
StageLap = Callable[[str, float], None]


class MissingCrop(NamedTuple):
    """One (anchor, frame) crop whose backbone features its stream's cache lacks."""

    cache: FeatureCache
    key: FeatureKey  # (anchor id, frame position)
    stream_id: str
    image: np.ndarray
    box: np.ndarray  # the anchor's box

    @property
    def frame(self) -> tuple[str, int]:
        """The frame's key among the uploaded frames of a batch."""
        return self.stream_id, self.key[1]


def _request(work: FrameWork) -> FeatureRequest:
    if work.features is None:
        raise ValueError(f"frame {work.frame_index} of stream {work.stream_id} has no feature request")
    return work.features


def _position(frame: Hashable) -> int:
    if not isinstance(frame, int):
        raise TypeError(f"feature reuse keys frames by their position in the stream, got {frame!r}")
    return frame


def missing_crops(works: Sequence[FrameWork]) -> list[MissingCrop]:
    """Each (stream, anchor, frame) crop of ``works`` that is not cached yet, once."""
    missing: dict[tuple[int, FeatureKey], MissingCrop] = {}
    for work in works:
        request = _request(work)
        for anchor_id, box in zip(request.anchor_ids, work.boxes):
            for frame in work.clip:
                key = (anchor_id, _position(frame))
                if key not in request.cache and (id(request.cache), key) not in missing:
                    missing[(id(request.cache), key)] = MissingCrop(
                        request.cache, key, work.stream_id, work.images[frame], box
                    )
    return list(missing.values())


class FeatureReuse:
    """Runs frames in reuse mode for one model; called from the runner's (device) thread."""

    def __init__(
        self,
        split: SplitNetwork,
        preset: ModelPreset,
        device: torch.device,
        buckets: Sequence[int],
        lap: StageLap,
    ):
        self.split, self.preset, self.device, self.buckets = split, preset, device, buckets
        self._lap = lap
        self.backbone_crops = 0  # crops the backbone has run on: what reuse saves

    def warm_up(self, inputs: torch.Tensor) -> None:
        """Both halves at every shape a bucket of clips ``inputs`` (B, T, 3, H, W) gives them."""
        self.split.frame_features(inputs[:, 0])
        stages = self.split.frame_features(inputs.flatten(0, 1))
        self.split.heatmaps([f.unflatten(0, inputs.shape[:2]) for f in stages])

    def heatmaps(self, works: Sequence[FrameWork]) -> torch.Tensor:
        """Heatmaps of every clip of ``works``; fills, then trims, their streams' caches."""
        start = time.perf_counter()
        missing = missing_crops(works)
        crops = self._crop(missing)
        self._lap("crop", start)

        start = time.perf_counter()
        if crops is not None:
            self._cache_features(missing, crops)
        heatmaps = self._heads(works)
        self._lap("model", start)
        latest = {id(work.features.cache): work.features for work in works if work.features is not None}
        for request in latest.values():  # a stream's frames come in order: its latest one decides
            request.cache.keep(set(request.anchor_ids), request.keep_from)
        return heatmaps

    def _crop(self, missing: Sequence[MissingCrop]) -> torch.Tensor | None:
        """(N, 3, H, W) normalised crops of the missing frames, each frame read once."""
        if not missing:
            return None
        images: dict[Hashable, np.ndarray] = {crop.frame: crop.image for crop in missing}
        boxes = np.stack([crop.box for crop in missing]).astype(np.float64)
        affines = input_to_image_affines(boxes, self.preset.input_size)
        clips: list[list[Hashable]] = [[crop.frame] for crop in missing]
        return normalize(cut_clips(images, clips, affines, self.preset.input_size, self.device))[:, 0]

    def _cache_features(self, missing: Sequence[MissingCrop], crops: torch.Tensor) -> None:
        done = 0
        for parts, real in bucket_chunks([crops], self.buckets):
            stages = self.split.frame_features(parts[0])
            for i, crop in enumerate(missing[done : done + real]):
                crop.cache.put(crop.key, [f[i].clone() for f in stages])  # its own storage, freed alone
            done += real
        self.backbone_crops += done

    def _heads(self, works: Sequence[FrameWork]) -> torch.Tensor:
        """The rest of the network on each clip's stack of cached per-frame features."""
        features = [
            _request(work).cache.get((anchor_id, _position(frame)))
            for work in works
            for anchor_id in _request(work).anchor_ids
            for frame in work.clip
        ]
        window = len(works[0].clip)
        stacks = [
            torch.stack([f[stage] for f in features]).unflatten(0, (len(features) // window, window))
            for stage in range(len(features[0]))
        ]
        return torch.cat(
            [self.split.heatmaps(parts)[:real] for parts, real in bucket_chunks(stacks, self.buckets)]
        )
