"""Track ids for the people of one video, and each person's box between detections.

Every track carries a constant-velocity motion model of its box (``tdmi.model.box_motion``, a
Kalman filter as in SORT and ByteTrack). Boxes (a detector's, the client's) measure the whole
box; keypoints measure only how far the person moved: once per frame, ``step`` folds in the
median displacement of the joints confident both in the track's new keypoints
(``observe_keypoints``) and in its previous ones, then moves every track one frame ahead. A
person's joints may be few or misplaced (a weak model, blur, occlusion), so a box drawn around
them would shrink and drift off the person; their displacement stays right as long as most of
them move with the person. A track whose pose model finds no confident joints coasts on its
motion for up to ``max_coast`` frames. Then ``match`` pairs the frame's boxes with the tracks:

- the similarity of a track and a box is their IoU, mixed with an OKS-like keypoint similarity
  when both carry keypoints (offline, where a frame's keypoints are known when it is matched),
  or with the share of the track's confident keypoints that fall inside the box (live and jobs,
  where the frame's own keypoints come later); pairs are chosen by the Hungarian method
  (``scipy.optimize.linear_sum_assignment``) so one good match is never stolen by a neighbour;
- as in ByteTrack, the boxes the detector is sure of are matched first, against every track,
  lost ones included; the faint ones (``sure`` False) are then matched to the tracks still
  unmatched that were being followed, and never start a track: a faint detection keeps a
  person, it does not invent one (their ids are -1);
- a high-scored box left unmatched starts a track; a track left unmatched is *lost*: it is not
  followed any more but kept ``max_age`` frames for a box to find it again, with its motion
  carrying its box on meanwhile.

Ids come from an ``id_source``. The default, :func:`next_track_id`, draws from one counter shared
by every tracker of the process, so two streams served by one process never share an id and an
id never comes back. A process that must keep ids apart from other processes (several workers
feeding one consumer) passes its own source, e.g. ``itertools.count(worker_index << 40).__next__``.

``update(boxes, keypoints)`` is ``step`` and ``match`` in one call, for offline use.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from tdmi.model.box_motion import BoxMotion

__all__ = [
    "Followed",
    "PoseTracker",
    "Track",
    "TrackerConfig",
    "box_containment",
    "box_iou",
    "keypoint_similarity",
    "keypoints_inside",
    "next_track_id",
]

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
    low_match_threshold: float = 0.5  # the same for low-scored boxes (ByteTrack's second pass)
    contain_threshold: float = 0.8  # a sure box left over, within a track left over (or around it)
    max_age: int = 30  # frames a lost track is kept for a box to find it again
    max_coast: int = 5  # frames a followed track goes on without confident keypoints before it is lost
    min_keypoint_score: float = 0.3  # joints below this score take no part in the similarity
    min_shared_keypoints: int = 3  # fewer confident joints in common: IoU alone decides
    keypoint_sigma: float = 0.08

    def __post_init__(self) -> None:
        if self.iou_weight < 0 or self.keypoint_weight < 0 or self.iou_weight + self.keypoint_weight <= 0:
            raise ValueError(
                f"tracker weights must be >= 0 and not both 0, got iou_weight={self.iou_weight}, "
                f"keypoint_weight={self.keypoint_weight}"
            )
        for name in ("match_threshold", "low_match_threshold", "contain_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_age < 0 or self.max_coast < 0:
            raise ValueError(
                f"max_age and max_coast must be >= 0 frames, got {self.max_age}, {self.max_coast}"
            )
        if self.min_shared_keypoints < 1:
            raise ValueError(f"min_shared_keypoints must be >= 1, got {self.min_shared_keypoints}")
        if self.keypoint_sigma <= 0:
            raise ValueError(f"keypoint_sigma must be > 0, got {self.keypoint_sigma}")


@dataclass(frozen=True)
class Track:
    """A track as it stands: its box (the motion model's estimate), its latest keypoints, the
    frames since a box matched it or it was followed (``misses``; > 0: lost)."""

    track_id: int
    box: np.ndarray  # (4,) x1, y1, x2, y2
    keypoints: np.ndarray | None  # (J, 3) x, y, score
    misses: int = 0


@dataclass(frozen=True)
class Followed:
    """The boxes ``step`` carried on: one per followed track; ``measured`` where its new keypoints
    held confident joints (a person seen by the pose model), else coasting."""

    boxes: np.ndarray  # (M, 5) x1, y1, x2, y2, score
    track_ids: np.ndarray  # (M,) int64
    measured: np.ndarray  # (M,) bool
    lost: int  # tracks followed until now that this step lost (coasted too long)


class _TrackState:
    """A track's mutable state inside the tracker."""

    def __init__(self, track_id: int, box: np.ndarray, score: float, keypoints: np.ndarray | None):
        self.track_id = track_id
        self.motion = BoxMotion(box)
        self.box = np.asarray(box[:4], dtype=np.float64)
        self.score = score
        self.keypoints = keypoints
        self.fresh = False  # keypoints not yet used to correct the motion
        self.misses = 0
        self.coasted = 0
        self.confirmed = False  # seen again since it started: by a box, or by confident keypoints
        self.posed = keypoints is not None  # the pose model has answered for it
        # the keypoints last folded in, and the box centre they stood for: the next keypoints'
        # displacement from them moves the box
        self.anchor: tuple[np.ndarray, np.ndarray] | None = None

    def snapshot(self) -> Track:
        return Track(self.track_id, self.box.copy(), self.keypoints, self.misses)

    def matched(self, box: np.ndarray, score: float, keypoints: np.ndarray | None) -> None:
        before = self.motion.mean[:2].copy()
        self.motion.correct(box)
        self.box, self.score, self.misses, self.coasted = np.asarray(box[:4], dtype=np.float64), score, 0, 0
        self.confirmed = True
        if keypoints is not None:
            self.keypoints, self.fresh = keypoints, False
            self.anchor = keypoints, self.motion.mean[:2].copy()
        elif self.anchor is not None:  # the box was off by as much where the anchor keypoints were
            self.anchor = self.anchor[0], self.anchor[1] + self.motion.mean[:2] - before

    def follow(self, min_score: float, min_joints: int) -> bool:
        """Fold in the new keypoints, if any: whether they hold ``min_joints`` confident joints
        (the pose model still sees a person); the box moves by their displacement from the anchor."""
        if not self.fresh or self.keypoints is None:
            return False
        confident = self.keypoints[:, 2] >= min_score
        if confident.sum() < min_joints:
            return False
        if self.anchor is not None:
            previous, centre = self.anchor
            shared = confident & (previous[:, 2] >= min_score)
            if shared.sum() >= min_joints:
                moved = np.median(self.keypoints[shared, :2] - previous[shared, :2], axis=0)
                self.motion.correct_centre(centre + moved)
        self.anchor = self.keypoints, self.motion.mean[:2].copy()
        return True

    def follow_score(self) -> float:
        if self.keypoints is None:
            return self.score
        return float(self.keypoints[:, 2].mean())


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    inter, area_a, area_b = _overlaps(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_containment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of the smaller box inside the larger, for every box of ``a`` (N, 4) with every box of
    ``b`` (M, 4): (N, M); 1 where one holds the other."""
    inter, area_a, area_b = _overlaps(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersections (N, M) of boxes ``a`` (N, 4) and ``b`` (M, 4), and their areas (N,), (M,)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    return inter, area_a, area_b


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


def keypoints_inside(
    reference: np.ndarray, boxes: np.ndarray, config: TrackerConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Share of each track's confident keypoints (T, J, 3) inside each box (N, 4): (T, N), and a
    mask (T,) of the tracks with at least ``min_shared_keypoints`` confident joints."""
    confident = reference[:, :, 2] >= config.min_keypoint_score
    x, y = reference[:, None, :, 0], reference[:, None, :, 1]
    inside = (
        (x >= boxes[None, :, None, 0])
        & (x <= boxes[None, :, None, 2])
        & (y >= boxes[None, :, None, 1])
        & (y <= boxes[None, :, None, 3])
    )
    count = confident.sum(axis=1)
    share = np.sum(inside & confident[:, None, :], axis=-1) / np.maximum(count, 1)[:, None]
    return share, count >= config.min_shared_keypoints


def _checked_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f"boxes must have shape (N, 4) or (N, 5) with scores, got {boxes.shape}")
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
        self._tracks: dict[int, _TrackState] = {}

    @property
    def tracks(self) -> tuple[Track, ...]:
        """The live tracks (followed and lost), oldest first."""
        return tuple(t.snapshot() for t in self._tracks.values())

    def step(self, *, follow_keypoints: bool = True) -> Followed:
        """One frame on: every track's new confident keypoints move its box (unless
        ``follow_keypoints`` is False: boxes come for every frame), then its motion moves it a
        frame ahead; returns the boxes of the tracks still followed. A followed track without
        confident keypoints for more than ``max_coast`` frames is lost; so is a new one at once
        when its first keypoints came back unsure and no second box confirmed it (most false
        detections); a lost one is dropped after ``max_age`` frames."""
        config = self.config
        boxes, ids, measured, lost = [], [], [], 0
        for track in list(self._tracks.values()):
            seen = follow_keypoints and track.follow(config.min_keypoint_score, config.min_shared_keypoints)
            track.fresh = False
            track.box = track.motion.predict()
            if seen:  # the pose model saw the person: followed (again, if it was lost)
                track.coasted, track.confirmed, track.misses = 0, True, 0
            elif track.misses > 0:
                track.misses += 1  # counts this frame: kept while the frames missed before it <= max_age
            elif not track.confirmed and track.posed and follow_keypoints:
                track.misses = 1  # lost quietly: its pose came back unsure, nothing says it is a person
            else:
                track.coasted += 1
                if track.coasted > self.config.max_coast:
                    track.misses, lost = 1, lost + 1
            if track.misses - 1 > self.config.max_age:
                del self._tracks[track.track_id]
            elif track.misses == 0:
                boxes.append([*track.box, track.follow_score()])
                ids.append(track.track_id)
                measured.append(seen)
        return Followed(
            np.array(boxes, dtype=np.float32).reshape(-1, 5),
            np.array(ids, dtype=np.int64),
            np.array(measured, dtype=bool),
            lost,
        )

    def match(
        self,
        boxes: np.ndarray,
        keypoints: np.ndarray | None = None,
        *,
        sure: np.ndarray | None = None,
        keep_measured: bool = False,
        pose_aware: bool = True,
    ) -> np.ndarray:
        """Pair this frame's ``boxes`` (N, 4), or (N, 5) with scores, and optional ``keypoints``
        (N, J, 3) with the tracks (call ``step`` first); returns their ids (N,) int64: the matched
        track's, a new one, or -1 for a faint box (``sure`` False; None: all sure) that matched
        nothing. Tracks left unmatched are lost, unless ``keep_measured`` and their keypoints
        corrected them this frame (the pose model still sees a person the detector missed).
        ``pose_aware`` False matches on the boxes alone (the motion-carried IoU)."""
        boxes = _checked_boxes(boxes)
        if keypoints is not None:
            keypoints = _checked_keypoints(keypoints, len(boxes))
        scores = boxes[:, 4] if boxes.shape[1] == 5 else np.ones(len(boxes))
        boxes = boxes[:, :4]
        ids = np.full(len(boxes), -1, dtype=np.int64)
        high = np.ones(len(boxes), bool) if sure is None else np.asarray(sure, bool).reshape(-1)
        if len(high) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(high)} sure flags")
        tracks = list(self._tracks.values())
        similar = functools.partial(self._similarity, boxes=boxes, keypoints=keypoints, pose_aware=pose_aware)
        first = _assign(tracks, np.flatnonzero(high), similar, self.config.match_threshold)
        left = [t for t in tracks if t.track_id not in first.values()]
        followed = [t for t in left if t.misses == 0]
        second = _assign(followed, np.flatnonzero(~high), similar, self.config.low_match_threshold)
        # a person half hidden, or half out of the frame, has a box that shrank inside the track's
        # (or grew around it): too little IoU, but one box holds the other
        left = [t for t in left if t.track_id not in second.values()]
        unmatched = np.setdiff1d(np.flatnonzero(high), list(first))
        third = _assign(
            left, unmatched, functools.partial(_containment, boxes=boxes), self.config.contain_threshold
        )
        by_id = {t.track_id: t for t in tracks}
        for col, track_id in (first | second | third).items():
            by_id[track_id].matched(
                boxes[col], float(scores[col]), None if keypoints is None else keypoints[col]
            )
            ids[col] = track_id
        for track in tracks:
            if track.track_id in ids or (keep_measured and track.misses == 0 and track.coasted == 0):
                continue
            track.misses = max(track.misses, 1)  # lost in this frame, or still lost
            if track.misses > self.config.max_age:  # the next frame would be one too many
                del self._tracks[track.track_id]
        for new in np.flatnonzero(high & (ids < 0)).tolist():
            ids[new] = self._start(
                boxes[new], float(scores[new]), None if keypoints is None else keypoints[new]
            )
        return ids

    def update(self, boxes: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """``step`` then ``match``: one frame's persons, ``boxes`` (N, 4) and optional ``keypoints``
        (N, J, 3), to track ids (N,) int64."""
        self.step()
        return self.match(boxes, keypoints)

    def observe_keypoints(self, track_ids: np.ndarray, keypoints: np.ndarray) -> None:
        """Store the keypoints (N, J, 3) the pose model found for ``track_ids`` (N,); the next
        ``step`` corrects the tracks' motion with them. Ids whose track has been dropped since are
        ignored: their keypoints come too late to matter."""
        track_ids = np.asarray(track_ids).reshape(-1)
        keypoints = _checked_keypoints(keypoints, len(track_ids))
        for track_id, points in zip(track_ids.tolist(), keypoints):
            track = self._tracks.get(track_id)
            if track is not None:
                track.keypoints, track.fresh, track.posed = points, True, True

    def _start(self, box: np.ndarray, score: float, keypoints: np.ndarray | None) -> int:
        track_id = self._id_source()
        if track_id in self._tracks:
            raise ValueError(f"id_source gave track id {track_id}, which is still live")
        self._tracks[track_id] = _TrackState(track_id, box, score, keypoints)
        return track_id

    def _similarity(
        self,
        tracks: list[_TrackState],
        columns: np.ndarray,
        boxes: np.ndarray,
        keypoints: np.ndarray | None,
        pose_aware: bool,
    ) -> np.ndarray:
        """(T, N) similarity of the tracks and this frame's boxes at ``columns``."""
        boxes = boxes[columns]
        keypoints = None if keypoints is None else keypoints[columns]
        iou = box_iou(np.array([t.box for t in tracks]).reshape(-1, 4), boxes)
        with_points = [i for i, t in enumerate(tracks) if t.keypoints is not None]
        if not with_points or self.config.keypoint_weight == 0 or not pose_aware:
            return iou
        reference = np.stack([tracks[i].keypoints for i in with_points])  # type: ignore[misc]
        if keypoints is not None:
            if reference.shape[1] != keypoints.shape[1]:
                raise ValueError(
                    f"keypoints have {keypoints.shape[1]} joints but the tracks have {reference.shape[1]}"
                )
            pose, usable = keypoint_similarity(reference, keypoints, boxes, self.config)
        else:
            pose, confident = keypoints_inside(reference, boxes, self.config)
            usable = np.broadcast_to(confident[:, None], pose.shape)
        weights = self.config.iou_weight, self.config.keypoint_weight
        mixed = (weights[0] * iou[with_points] + weights[1] * pose) / sum(weights)
        iou[with_points] = np.where(usable, mixed, iou[with_points])
        return iou


def _containment(tracks: list[_TrackState], columns: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, N) ``box_containment`` of the tracks' boxes and the boxes at ``columns``."""
    return box_containment(np.array([t.box for t in tracks]), boxes[columns])


def _assign(
    tracks: list[_TrackState],
    columns: np.ndarray,
    similarity: Callable[[list[_TrackState], np.ndarray], np.ndarray],
    threshold: float,
) -> dict[int, int]:
    """Hungarian matching of ``tracks`` with the boxes at ``columns``: box column -> track id."""
    if not tracks or not len(columns):
        return {}
    scores = similarity(tracks, columns)
    # pairs below the threshold count as 0 so they never buy a worse assignment elsewhere
    eligible = scores >= threshold
    rows, cols = linear_sum_assignment(np.where(eligible, scores, 0.0), maximize=True)
    return {int(columns[c]): tracks[r].track_id for r, c in zip(rows, cols) if eligible[r, c]}
