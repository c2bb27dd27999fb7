"""The unit of inference: one key frame of one stream with all of its persons."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from tdmi.service.inference.feature_cache import FeatureRequest

__all__ = ["Dropped", "FrameWork", "PoseArrays"]


@dataclass(frozen=True)
class PoseArrays:
    """Keypoints of one frame's persons: (N, J, 3) x, y, score in image pixels."""

    keypoints: np.ndarray


@dataclass(frozen=True)
class Dropped:
    """A frame the live drop policy skipped, and why."""

    reason: str


@dataclass(eq=False)
class FrameWork:
    """Everything the model runner needs for one frame; its persons always travel in one batch.

    ``clip`` holds, per clip position, the key of a frame in ``images`` (the key frame stands in
    for missing neighbours, see ``tdmi.model.data.clips``); ``boxes`` (N, 4) are the key frame's, the
    crop boxes of its clips. In feature-reuse mode ``features`` is set: ``boxes`` are then the
    tracks' anchors and the runner reuses cached per-frame features (frame keys are positions).
    """

    stream_id: str
    frame_index: int
    images: dict[Hashable, np.ndarray]
    clip: list[Hashable]
    boxes: np.ndarray
    live: bool = False
    deadline: float | None = None  # monotonic time after which a live frame is dropped
    features: FeatureRequest | None = None  # feature reuse: the stream's cache and the anchors
    enqueued_at: float = field(default_factory=time.monotonic)
    future: asyncio.Future[PoseArrays | Dropped] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return len(self.boxes)

    def resolve(self, outcome: PoseArrays | Dropped | BaseException) -> None:
        """Answer the waiting session once; later answers (e.g. after a cancel) are ignored."""
        if self.future.done():
            return
        loop = self.future.get_loop()
        if isinstance(outcome, BaseException):
            loop.call_soon_threadsafe(_set_exception, self.future, outcome)
        else:
            loop.call_soon_threadsafe(_set_result, self.future, outcome)


def _set_result(future: asyncio.Future, value: object) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
