"""Multiple-object-tracking metrics per joint, as poseval computes them with py-motmetrics.

poseval feeds one ``motmetrics.MOTAccumulator`` per joint and sequence with the frames of the
sequence except the last, reads misses, switches, false positives, objects and detections
(matches + switches), adds them up over sequences and forms per joint

    MOTA = 100 (1 - (misses + switches + false positives) / objects)
    MOTP = 100 (1 - sum of the accumulator's distance column / detections)
    precision = 100 detections / (detections + false positives), recall = 100 detections / objects

with the same nan-skipping mean over joints for the totals as AP. ``JointTracker`` is the
accumulator's frame update (py-motmetrics >= 1.2) reduced to those numbers. Its distance column
holds, besides the distance of every match, every candidate pair within threshold (motmetrics'
``RAW`` rows), so MOTP comes out lower than the textbook one: that is what poseval reports.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from tdmi.model.evaluation.posetrack_ap import nan_mean
from tdmi.model.evaluation.posetrack_io import NUM_JOINTS
from tdmi.model.evaluation.posetrack_match import JointPairs

__all__ = ["JointTracker", "MotCounts", "mot_counts", "mot_metrics"]


def _assignment(costs: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost pairs among the finite entries, as motmetrics' scipy solver finds them."""
    valid = np.isfinite(costs)
    if not valid.any():
        return []
    if not valid.all():
        big = 2 * min(costs.shape) * (np.abs(costs[valid]).max() + 1) + 1
        costs = np.where(valid, costs, big)
    rows, cols = linear_sum_assignment(costs)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if valid[i, j]]


@dataclass
class JointTracker:
    """Events of one joint in one sequence, counted the way py-motmetrics counts them."""

    matches: int = 0
    switches: int = 0
    misses: int = 0
    false_positives: int = 0
    objects: int = 0
    distances: list[float] = field(default_factory=list)  # the accumulator's D column, in order
    _partner: dict[Hashable, Hashable] = field(default_factory=dict)  # object -> its last hypothesis
    _owner: dict[Hashable, Hashable] = field(default_factory=dict)  # hypothesis -> its last object
    _matched_objects: set[Hashable] = field(default_factory=set)
    _seen_hypotheses: set[Hashable] = field(default_factory=set)

    def update(self, pairs: JointPairs) -> None:
        oids, hids, dists = list(pairs.gt_ids), list(pairs.pred_ids), pairs.distances.astype(float).copy()
        valid_i, valid_j = np.where(np.isfinite(dists))
        paired_o, paired_h = set(valid_i.tolist()), set(valid_j.tolist())
        # RAW rows: a header, each candidate pair, each object and hypothesis without one
        self.distances += [np.nan, *dists[valid_i, valid_j].tolist()]
        self.distances += [np.nan] * (len(oids) - len(paired_o) + len(hids) - len(paired_h))
        self.objects += len(oids)
        done_o, done_h = np.zeros(len(oids), bool), np.zeros(len(hids), bool)
        if oids and hids:
            self._keep_tracks(oids, hids, dists, done_o, done_h)
            dists[done_o, :] = np.nan
            dists[:, done_h] = np.nan
            for i, j in _assignment(dists):
                self._pair(oids[i], hids[j], float(dists[i, j]))
                done_o[i] = done_h[j] = True
        missed, spurious = int((~done_o).sum()), int((~done_h).sum())
        self.misses += missed
        self.false_positives += spurious
        self.distances += [np.nan] * (missed + spurious)

    def _keep_tracks(
        self, oids: list, hids: list, dists: np.ndarray, done_o: np.ndarray, done_h: np.ndarray
    ) -> None:
        """Step 1: an object still within reach of its last hypothesis keeps it."""
        for i, o in enumerate(oids):
            if o not in self._partner:
                continue
            free = [j for j, h in enumerate(hids) if not done_h[j] and h == self._partner[o]]
            if free and np.isfinite(dists[i, free[0]]):
                j = free[0]
                done_o[i] = done_h[j] = True
                self.matches += 1
                self._matched_objects.add(o)
                self._seen_hypotheses.add(hids[j])
                self.distances.append(float(dists[i, j]))

    def _pair(self, o: Hashable, h: Hashable, d: float) -> None:
        """Step 2: a new pairing from the assignment; a switch if the object had another partner."""
        switch = o in self._partner and self._partner[o] != h
        if switch and h not in self._seen_hypotheses:
            self.distances.append(d)  # ASCEND row
        if h in self._owner and self._owner[h] != o:
            if o not in self._matched_objects:
                self.distances.append(d)  # MIGRATE row
            self.distances.append(d)  # TRANSFER row
        self._seen_hypotheses.add(h)
        self._matched_objects.add(o)
        self.distances.append(d)
        if switch:
            self.switches += 1
        else:
            self.matches += 1
        self._partner[o] = h
        self._owner[h] = o

    @property
    def distance_sum(self) -> float:
        """The D column's sum as pandas takes it: nan rows count as 0, in event order."""
        values = np.array(self.distances, dtype=np.float64)
        return float(np.where(np.isnan(values), 0.0, values).sum())


@dataclass(frozen=True)
class MotCounts:
    """Per joint (poseval order) counts summed over sequences, and the frames they come from."""

    misses: np.ndarray
    switches: np.ndarray
    false_positives: np.ndarray
    objects: np.ndarray
    detections: np.ndarray
    distance_sum: np.ndarray
    num_frames: int

    @classmethod
    def zeros(cls) -> MotCounts:
        zeros = np.zeros(NUM_JOINTS)
        return cls(zeros, zeros, zeros, zeros, zeros, zeros, num_frames=0)

    def __add__(self, other: MotCounts) -> MotCounts:
        return MotCounts(
            self.misses + other.misses,
            self.switches + other.switches,
            self.false_positives + other.false_positives,
            self.objects + other.objects,
            self.detections + other.detections,
            self.distance_sum + other.distance_sum,
            self.num_frames + other.num_frames,
        )


def mot_counts(frames: Sequence[Sequence[JointPairs]]) -> MotCounts:
    """Counts of one sequence, from the per-joint pairs of each of its frames (last one left out)."""
    trackers = [JointTracker() for _ in range(NUM_JOINTS)]
    for pairs in frames[:-1]:
        for tracker, joint_pairs in zip(trackers, pairs):
            tracker.update(joint_pairs)
    return MotCounts(
        misses=np.array([t.misses for t in trackers], dtype=np.float64),
        switches=np.array([t.switches for t in trackers], dtype=np.float64),
        false_positives=np.array([t.false_positives for t in trackers], dtype=np.float64),
        objects=np.array([t.objects for t in trackers], dtype=np.float64),
        detections=np.array([t.matches + t.switches for t in trackers], dtype=np.float64),
        distance_sum=np.array([t.distance_sum for t in trackers]),
        num_frames=len(frames) - 1,
    )


def mot_metrics(counts: MotCounts) -> dict[str, tuple[np.ndarray, float]]:
    """MOTA, MOTP, precision and recall (percent) per joint, and their totals."""
    with np.errstate(divide="ignore", invalid="ignore"):
        objects = np.where(counts.objects > 0, counts.objects, np.nan)
        found = counts.detections + counts.false_positives
        values = {
            "mota": 100 * (1.0 - (counts.misses + counts.switches + counts.false_positives) / objects),
            "motp": np.where(
                counts.detections == 0, 0.0, 100 * (1.0 - counts.distance_sum / counts.detections)
            ),
            "precision": 100 * (1.0 * counts.detections / np.where(found > 0, found, np.nan)),
            "recall": 100 * (1.0 * counts.detections / objects),
        }
    return {name: (per_joint, nan_mean(per_joint)) for name, per_joint in values.items()}
