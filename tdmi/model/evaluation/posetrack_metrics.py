"""PoseTrack results: per-joint numbers, the papers' columns, JSON, and poseval's printed table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tdmi.model.evaluation.jitter import Jitter
from tdmi.model.evaluation.posetrack_io import POSEVAL_JOINTS

__all__ = ["COLUMNS", "JointValues", "PoseTrackMetrics", "TrackingMetrics"]

# The papers' (and poseval's) columns: head = head_top, head_bottom, nose; limbs right, left
COLUMNS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Shoulder": ("right_shoulder", "left_shoulder"),
    "Elbow": ("right_elbow", "left_elbow"),
    "Wrist": ("right_wrist", "left_wrist"),
    "Hip": ("right_hip", "left_hip"),
    "Knee": ("right_knee", "left_knee"),
    "Ankle": ("right_ankle", "left_ankle"),
}
_SHORT = {"Head": "Head", "Shoulder": "Shou", "Elbow": "Elb ", "Wrist": "Wri ", "Hip": "Hip ", "Knee": "Knee"}


@dataclass(frozen=True)
class JointValues:
    """One poseval number per evaluated joint (percent; nan where poseval has none) and the total.

    ``per_joint`` follows ``POSEVAL_JOINTS``; ``total`` is poseval's: the mean over the joints
    that are not nan.
    """

    per_joint: tuple[float, ...]
    total: float

    @classmethod
    def of(cls, values: np.ndarray, total: float) -> JointValues:
        return cls(tuple(float(v) for v in values), float(total))

    def by_joint(self) -> dict[str, float]:
        return dict(zip(POSEVAL_JOINTS, self.per_joint))

    def columns(self) -> dict[str, float]:
        """Head .. Ankle (plain means, nan if a member is nan, as poseval prints) and Total."""
        values = np.array(self.per_joint)
        out = {
            name: float(values[[POSEVAL_JOINTS.index(j) for j in joints]].mean())
            for name, joints in COLUMNS.items()
        }
        out["Total"] = self.total
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"per_joint": _clean(self.by_joint()), "columns": _clean(self.columns())}


@dataclass(frozen=True)
class TrackingMetrics:
    """poseval's MOT numbers (percent) and the counts they come from (summed over joints)."""

    mota: JointValues
    motp: JointValues
    precision: JointValues
    recall: JointValues
    num_frames: int  # frames fed to the accumulators: each sequence's frames but its last
    counts: Mapping[str, int]  # misses, switches, false_positives, objects, detections

    def to_dict(self) -> dict[str, Any]:
        return {
            "mota": self.mota.to_dict(),
            "motp": self.motp.to_dict(),
            "precision": self.precision.to_dict(),
            "recall": self.recall.to_dict(),
            "num_frames": self.num_frames,
            "counts": dict(self.counts),
        }


@dataclass(frozen=True)
class PoseTrackMetrics:
    """Multi-person pose estimation (AP) and, with track ids, tracking (MOT) results."""

    ap: JointValues
    precision: JointValues  # at the last rank, as poseval saves it
    recall: JointValues
    num_frames: int  # evaluated (labelled, kept by the filter) frames
    num_sequences: int
    tracking: TrackingMetrics | None  # None without track ids or without a sequence of >= 2 frames
    jitter: Jitter  # acceleration error over box height, along ground-truth tracks
    per_sequence: Mapping[str, PoseTrackMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; nan becomes None."""
        return {
            "ap": self.ap.to_dict(),
            "precision": self.precision.to_dict(),
            "recall": self.recall.to_dict(),
            "num_frames": self.num_frames,
            "num_sequences": self.num_sequences,
            "tracking": None if self.tracking is None else self.tracking.to_dict(),
            "jitter": self.jitter.to_dict(),
            "per_sequence": {name: m.to_dict() for name, m in self.per_sequence.items()},
        }

    def table(self) -> str:
        """The tables poseval prints (LaTeX rows: Head .. Ankle, Total)."""
        lines = [
            "Average Precision (AP) metric:",
            "&" + "".join(f" {_SHORT[c]} &" for c in _SHORT) + " Ankl & Total\\\\",
            _row(list(self.ap.columns().values())),
        ]
        if self.tracking is not None:
            t = self.tracking
            lines += [
                "Multiple Object Tracking (MOT) metrics:",
                "&" + " MOTA &" * 8 + " MOTP & Prec & Rec  \\\\",
                "&" + "".join(f" {_SHORT[c]} &" for c in _SHORT) + " Ankl & Total& Total& Total& Total\\\\",
                _row([*t.mota.columns().values(), t.motp.total, t.precision.total, t.recall.total]),
            ]
        return "\n".join(lines)

    def jitter_line(self) -> str:
        """Jitter in words (not part of ``table``, which stays poseval's printout)."""
        j = self.jitter
        value = "n/a" if math.isnan(j.mean) else f"{j.mean:.4f}"
        return (
            f"Jitter (acceleration error / GT keypoint-box height, lower is steadier): {value}"
            f" over {j.triples} of {j.gt_triples} ground-truth joint triples (matched in all 3 frames)"
        )


def _cell(value: float) -> str:
    return f"{value:1.1f}".rjust(5)  # poseval: "{:>5}".format("%1.1f" % value)


def _row(values: list[float]) -> str:
    return "&" + " &".join(_cell(v) for v in values) + " \\\\"


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else v) for k, v in values.items()}
