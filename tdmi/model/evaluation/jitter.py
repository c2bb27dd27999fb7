"""Temporal stability of predicted poses: the acceleration error against ground truth ("jitter").

AP scores every frame on its own, so a model whose joints shake from frame to frame around the
right place loses nothing there; jitter measures that shake. For each ground-truth track and
each joint it has in three consecutive frames t-1, t, t+1 (consecutive positions in ``images``,
all three labelled), the triple's error is

    | (p[t+1] - 2 p[t] + p[t-1]) - (g[t+1] - 2 g[t] + g[t-1]) | / h[t]

with p the prediction matched to the ground-truth person in each frame, g the ground truth, |.|
the Euclidean length in pixels and h[t] the height of the box around the ground-truth person's
annotated keypoints at t (the files' person boxes are not read: poseval ignores them, and the
keypoint box exists for every person). Jitter is the mean over the triples that count (lower is
steadier). A constant offset or a smooth drift from the truth costs nothing; noise does.

A prediction belongs to a ground-truth person in a frame exactly when the AP/MOTA matching
(``posetrack_match``, poseval's ``assignGTmulti``) assigns it there. A ground-truth triple counts
only when the person is matched in all three frames and the matched predictions have the joint
in all three; the others are left out, and both numbers are reported. Ground-truth people need a
``track_id`` and a keypoint box of non-zero height to form triples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tdmi.model.evaluation.posetrack_io import EvalFrame
from tdmi.model.evaluation.posetrack_match import FrameMatch

__all__ = ["Jitter", "sequence_jitter"]


@dataclass(frozen=True)
class Jitter:
    """Sum of the counted triples' errors, how many counted, how many ground truth had."""

    total_error: float
    triples: int
    gt_triples: int

    @property
    def mean(self) -> float:
        """Mean acceleration error over box height; nan when no triple counted."""
        return self.total_error / self.triples if self.triples else math.nan

    def __add__(self, other: Jitter) -> Jitter:
        return Jitter(
            self.total_error + other.total_error,
            self.triples + other.triples,
            self.gt_triples + other.gt_triples,
        )

    @classmethod
    def zero(cls) -> Jitter:
        return cls(0.0, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        mean = self.mean
        return {
            "mean": None if math.isnan(mean) else mean,
            "triples": self.triples,
            "gt_triples": self.gt_triples,
        }


@dataclass(frozen=True, eq=False)
class _Tracked:
    """One ground-truth person in one frame and the prediction matched to it (None: unmatched)."""

    gt_xy: np.ndarray  # (15, 2)
    gt_present: np.ndarray  # (15,)
    pred_xy: np.ndarray | None
    pred_present: np.ndarray | None


def _people(frame: EvalFrame, match: FrameMatch) -> dict[int, _Tracked]:
    out: dict[int, _Tracked] = {}
    for g, track_id in enumerate(frame.gt.track_ids):
        if track_id is None:
            continue
        p = int(match.pred_of_gt[g])
        matched = p >= 0
        out[track_id] = _Tracked(
            frame.gt.xy[g],
            frame.gt.present[g],
            frame.pred.xy[p] if matched else None,
            frame.pred.present[p] if matched else None,
        )
    return out


def _box_height(person: _Tracked) -> float:
    ys = person.gt_xy[person.gt_present, 1]
    return float(ys.max() - ys.min()) if len(ys) else 0.0


def _acceleration(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return a - 2 * b + c


def _triple(before: _Tracked, now: _Tracked, after: _Tracked) -> Jitter:
    """One person's joints in one triple of frames."""
    height = _box_height(now)
    if height <= 0:
        return Jitter.zero()
    counted = before.gt_present & now.gt_present & after.gt_present
    gt_triples = int(counted.sum())
    pred_xy = [p.pred_xy for p in (before, now, after) if p.pred_xy is not None]
    pred_present = [p.pred_present for p in (before, now, after) if p.pred_present is not None]
    if len(pred_xy) < 3:
        return Jitter(0.0, 0, gt_triples)
    for present in pred_present:
        counted = counted & present
    error = _acceleration(*pred_xy) - _acceleration(before.gt_xy, now.gt_xy, after.gt_xy)
    lengths = np.linalg.norm(error[counted], axis=-1) / height
    return Jitter(float(lengths.sum()), int(counted.sum()), gt_triples)


def sequence_jitter(frames: Sequence[EvalFrame], matches: Sequence[FrameMatch]) -> Jitter:
    """Jitter of one sequence's evaluated frames and their matches (same order)."""
    tracked = {f.index: _people(f, m) for f, m in zip(frames, matches, strict=True)}
    out = Jitter.zero()
    for t, now in tracked.items():
        before, after = tracked.get(t - 1), tracked.get(t + 1)
        if before is None or after is None:
            continue
        for track_id in now.keys() & before.keys() & after.keys():
            out = out + _triple(before[track_id], now[track_id], after[track_id])
    return out
