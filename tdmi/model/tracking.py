"""Track ids for the people of one video: each frame's persons are matched to the live tracks.

The similarity of a track and a person is the box IoU, mixed with an OKS-like keypoint
similarity when both carry keypoints; the pairs are chosen by the Hungarian method
(``scipy.optimize.linear_sum_assignment``) so that one good match is never stolen by a greedy
neighbour. A person left unmatched starts a new track; a track left unmatched for more than
``max_age`` frames is dropped, so a person who comes back later gets a new id.

Ids come from an ``id_source``. The default, :func:`next_track_id`, draws from one counter shared
by every tracker of the process, so two streams served by one process never share an id and an
id never comes back. A process that must keep ids apart from other processes (several workers
feeding one consumer) passes its own source, e.g. ``itertools.count(worker_index << 40).__next__``.

In a streaming pipeline the boxes of a frame are known before its keypoints: call
``update(boxes)`` to get the ids (association on IoU, plus keypoints if the caller has any), then
``observe_keypoints(ids, keypoints)`` once the pose model has answered; the stored keypoints take
part in the next association and are what boxes get propagated from.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["PoseTracker", "Track", "TrackerConfig", "box_iou", "keypoint_similarity", "next_track_id"]

_PROCESS_IDS = itertools.count(1)


def next_track_id() -> int:
    """The next id of the process-wide sequence (``itertools.count`` is atomic under the GIL)."""
    return next(_PROCESS_IDS)


@dataclass(frozen=True)
class TrackerConfig:
    """How persons are matched to tracks.

    ``keypoint_sigma`` plays the part of COCO's per-joint OKS constant, the same for every joint:
    joint layouts differ (PoseTrack has head top/bottom where COCO has eyes), and between two
    frames the error is motion, not annotation noise.
    """

    iou_weight: float = 0.5
    keypoint_weight: float = 0.5
    match_threshold: float = 0.3  # minimum similarity of a matched pair
    max_age: int = 30  # frames a track survives unmatched
    min_keypoint_score: float = 0.3  # joints below this score take no part in the similarity
    min_shared_keypoints: int = 3  # fewer confident joints in common: IoU alone decides
    keypoint_sigma: float = 0.08

    def __post_init__(self) -> None:
        if self.iou_weight < 0 or self.keypoint_weight < 0 or self.iou_weight + self.keypoint_weight <= 0:
            raise ValueError(
                f"tracker weights must be >= 0 and not both 0, got iou_weight={self.iou_weight}, "
                f"keypoint_weight={self.keypoint_weight}"
            )
        if not 0.0 <= self.match_threshold <= 1.0:
            raise ValueError(f"match_threshold must be in [0, 1], got {self.match_threshold}")
        if self.max_age < 0:
            raise ValueError(f"max_age must be >= 0 frames, got {self.max_age}")
        if self.min_shared_keypoints < 1:
            raise ValueError(f"min_shared_keypoints must be >= 1, got {self.min_shared_keypoints}")
        if self.keypoint_sigma <= 0:
            raise ValueError(f"keypoint_sigma must be > 0, got {self.keypoint_sigma}")


@dataclass(frozen=True)
class Track:
    """A live track: its last matched box, its last observed keypoints, frames since last matched."""

    track_id: int
    box: np.ndarray  # (4,) x1, y1, x2, y2
    keypoints: np.ndarray | None  # (J, 3) x, y, score
    misses: int = 0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def keypoint_similarity(
    reference: np.ndarray,
    candidates: np.ndarray,
    candidate_boxes: np.ndarray,
    config: TrackerConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """OKS-like similarity of ``reference`` (T, J, 3) and ``candidates`` (N, J, 3) keypoints.

    The scale is each candidate's box area, as OKS uses the object's area. Returns the
    similarity (T, N) in [0, 1], averaged over the joints confident on both sides, and a mask
    (T, N) of the pairs that share at least ``min_shared_keypoints`` such joints.
    """
    confident = (reference[:, None, :, 2] >= config.min_keypoint_score) & (
        candidates[None, :, :, 2] >= config.min_keypoint_score
    )
    squared = np.sum((reference[:, None, :, :2] - candidates[None, :, :, :2]) ** 2, axis=-1)
    sizes = candidate_boxes[:, 2:] - candidate_boxes[:, :2]
    area = np.maximum(np.prod(np.clip(sizes, 0, None), axis=-1), 1.0)
    kappa = 2.0 * config.keypoint_sigma
    per_joint = np.exp(-squared / (2.0 * area[None, :, None] * kappa**2))
    shared = confident.sum(axis=-1)
    similarity = np.sum(per_joint * confident, axis=-1) / np.maximum(shared, 1)
    return similarity, shared >= config.min_shared_keypoints


def _checked_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must be finite numbers")
    return boxes


def _checked_keypoints(keypoints: np.ndarray, count: int) -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[0] != count or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must have shape ({count}, J, 3), got {keypoints.shape}")
    return keypoints


class PoseTracker:
    """Stable track ids within one video or stream; create one per stream."""

    def __init__(self, config: TrackerConfig | None = None, id_source: Callable[[], int] = next_track_id):
        self.config = config or TrackerConfig()
        self._id_source = id_source
        self._tracks: dict[int, Track] = {}

    @property
    def tracks(self) -> tuple[Track, ...]:
        """The live tracks, oldest first."""
        return tuple(self._tracks.values())

    def update(self, boxes: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """Match one frame's persons, ``boxes`` (N, 4) and optional ``keypoints`` (N, J, 3), to the
        tracks; returns their track ids (N,) int64, new ids for persons no track claimed."""
        boxes = _checked_boxes(boxes)
        if keypoints is not None:
            keypoints = _checked_keypoints(keypoints, len(boxes))
        tracks = list(self._tracks.values())
        similarity = self._similarity(tracks, boxes, keypoints)
        # pairs below the threshold count as 0 so they never buy a worse assignment elsewhere
        eligible = similarity >= self.config.match_threshold
        rows, cols = linear_sum_assignment(np.where(eligible, similarity, 0.0), maximize=True)
        ids = np.zeros(len(boxes), dtype=np.int64)
        claimed = np.zeros(len(boxes), dtype=bool)
        matched_tracks = set()
        for row, col in zip(rows, cols):
            if not eligible[row, col]:
                continue
            track = tracks[row]
            kept = track.keypoints if keypoints is None else keypoints[col]
            self._tracks[track.track_id] = replace(track, box=boxes[col], keypoints=kept, misses=0)
            matched_tracks.add(track.track_id)
            ids[col], claimed[col] = track.track_id, True
        for track in tracks:
            if track.track_id in matched_tracks:
                continue
            if track.misses >= self.config.max_age:
                del self._tracks[track.track_id]
            else:
                self._tracks[track.track_id] = replace(track, misses=track.misses + 1)
        for col in np.flatnonzero(~claimed):
            track_id = self._id_source()
            if track_id in self._tracks:
                raise ValueError(f"id_source gave track id {track_id}, which is still live")
            self._tracks[track_id] = Track(
                track_id, boxes[col], None if keypoints is None else keypoints[col]
            )
            ids[col] = track_id
        return ids

    def observe_keypoints(self, track_ids: np.ndarray, keypoints: np.ndarray) -> None:
        """Store the keypoints (N, J, 3) the pose model found for ``track_ids`` (N,).

        Ids whose track has been dropped since are ignored: their keypoints come too late to matter.
        """
        track_ids = np.asarray(track_ids).reshape(-1)
        keypoints = _checked_keypoints(keypoints, len(track_ids))
        for track_id, points in zip(track_ids.tolist(), keypoints):
            track = self._tracks.get(track_id)
            if track is not None:
                self._tracks[track_id] = replace(track, keypoints=points)

    def _similarity(self, tracks: list[Track], boxes: np.ndarray, keypoints: np.ndarray | None) -> np.ndarray:
        """(T, N) similarity of the tracks and the persons of this frame."""
        track_boxes = np.array([t.box for t in tracks]).reshape(-1, 4)
        iou = box_iou(track_boxes, boxes)
        with_points = [i for i, t in enumerate(tracks) if t.keypoints is not None]
        if keypoints is None or not with_points or self.config.keypoint_weight == 0:
            return iou
        reference = np.stack([tracks[i].keypoints for i in with_points])  # type: ignore[misc]
        if reference.shape[1] != keypoints.shape[1]:
            raise ValueError(
                f"keypoints have {keypoints.shape[1]} joints but the tracks have {reference.shape[1]}"
            )
        oks, usable = keypoint_similarity(reference, keypoints, boxes, self.config)
        weights = self.config.iou_weight, self.config.keypoint_weight
        mixed = (weights[0] * iou[with_points] + weights[1] * oks) / sum(weights)
        iou[with_points] = np.where(usable, mixed, iou[with_points])
        return iou
