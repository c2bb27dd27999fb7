"""Feature reuse in the model runner: per-frame backbone features of a stream, computed once per anchor.

In exact mode every key frame crops its 2d+1 frames with its own box, so nothing is shared. In
reuse mode a session keeps one crop box (an *anchor*) per track while the person stays inside it
(``tdmi.service.streaming.anchors``); a frame cropped with an anchor then gives the same backbone
features to every window that holds it, so the runner computes them once, keeps them in the
stream's ``FeatureCache`` and runs only the rest of TDMI (encoder, disentanglement, heads) on the
cached stack.

The cache belongs to the session, so it lives exactly as long as the stream (and is emptied when
the stream's last result is out); it holds device tensors and only the device thread reads or
writes it. Frames of one stream reach the runner in order (the batcher keeps a stream's frames in
FIFO order and one thread runs the batches), so after frame t the features of frames before
``t + 1 - d`` and of anchors frame t no longer uses are dropped: memory stays at about one
window's features per person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from tdmi.model.tdmi import TDMI
from tdmi.service.inference.backends import Backend, TorchBackend

__all__ = ["FeatureCache", "FeatureKey", "FeatureRequest", "SplitNetwork", "split_network"]

FeatureKey = tuple[int, int]  # (anchor id, frame position in the stream)


class FeatureCache:
    """One stream's per-frame backbone features, by (anchor id, frame position)."""

    def __init__(self) -> None:
        self._entries: dict[FeatureKey, List[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: FeatureKey) -> bool:
        return key in self._entries

    def get(self, key: FeatureKey) -> List[torch.Tensor]:
        return self._entries[key]

    def put(self, key: FeatureKey, stage_features: List[torch.Tensor]) -> None:
        self._entries[key] = stage_features

    @property
    def nbytes(self) -> int:
        """Bytes of tensor memory held (each entry owns its storage)."""
        return sum(t.numel() * t.element_size() for features in self._entries.values() for t in features)

    def keep(self, anchor_ids: set[int], first_frame: int) -> None:
        """Drop what no later window can read: other anchors' features, frames before ``first_frame``."""
        for key in [k for k in self._entries if k[0] not in anchor_ids or k[1] < first_frame]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, eq=False)
class FeatureRequest:
    """What a frame in reuse mode carries to the model runner besides its images and crop boxes.

    ``anchor_ids[i]`` names the anchor whose box (``FrameWork.boxes[i]``) crops person ``i``'s
    frames; ``keep_from`` is the first frame position a later window of the stream can use.
    """

    cache: FeatureCache
    anchor_ids: tuple[int, ...]
    keep_from: int


class SplitNetwork:
    """An eager TDMI run in its two halves (``TDMI.forward_frame_features`` and the rest)."""

    def __init__(self, network: TDMI, dtype: torch.dtype):
        self.network = network
        self.dtype = dtype

    @torch.inference_mode()
    def frame_features(self, frames: torch.Tensor) -> List[torch.Tensor]:
        """(N, 3, H, W) float32 crops -> the four stage features, in the network's dtype."""
        return self.network.forward_frame_features(frames.to(self.dtype))

    @torch.inference_mode()
    def heatmaps(self, stage_features: List[torch.Tensor]) -> torch.Tensor:
        """Stacked (B, T, C_i, h, w) stage features -> float32 heatmaps (B, J, h, w)."""
        return self.network.forward_from_frame_features(stage_features).float()


def split_network(backend: Backend) -> SplitNetwork:
    """The two halves of the network behind an eager torch backend; other backends are refused.

    TorchScript and ONNX exports hold the whole network as one graph, so they cannot run the
    halves: feature reuse needs the ``torch`` backend.
    """
    if not isinstance(backend, TorchBackend) or backend.name != "torch":
        raise ValueError(f"feature_reuse needs backend torch, got {backend.name}")
    if not isinstance(backend.module, TDMI):
        raise ValueError("feature_reuse needs a multi-frame TDMI model")
    return SplitNetwork(backend.module, backend.dtype)
