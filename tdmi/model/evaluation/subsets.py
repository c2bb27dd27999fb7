"""PoseTrack mAP on subsets of synthetic video, and paired bootstrap intervals over videos.

The synthetic annotations say, per frame, whether it is blurred (motion blur or defocus above
their thresholds) or has an occluded joint, and per person which joints are hidden
(``occluded_joints``, see ``tdmi.model.data.synth``). The subsets:

- ``all``: every labelled frame;
- ``occluded_joints``: only the hidden joints: every other joint is removed from the ground
  truth *and* from the prediction of the same person (matched by track id, as predictions made
  from ground-truth boxes carry it), so a visible joint is neither a miss nor a false positive;
- ``blurred_frames``: frames flagged ``blurred``;
- ``clean_frames``: frames neither blurred nor occluded.

A model's mAP on a set of videos is poseval's per-joint AP over all their frames pooled, averaged
over the joints that have ground truth there. The paired bootstrap
resamples videos with replacement (the same draw for both models) and recomputes both mAPs on the
pooled frames of the draw; the 95 % interval is the 2.5th and 97.5th percentile of the difference.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tdmi.model.evaluation.posetrack_ap import joint_ap, nan_mean
from tdmi.model.evaluation.posetrack_io import prepare_sequence
from tdmi.model.evaluation.posetrack_match import FrameMatch, match_frame

__all__ = [
    "SUBSETS",
    "Difference",
    "mean_ap",
    "only_occluded_joints",
    "paired_bootstrap",
    "subset_matches",
]

SUBSETS = ("all", "occluded_joints", "blurred_frames", "clean_frames")
Matches = dict[str, list[FrameMatch]]  # sequence name -> its frames' matches


def _tags(image: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = image.get("synthetic")
    if not isinstance(tags, Mapping):
        raise ValueError("subsets need synthetic annotations (images[].synthetic); use `tdmi synth` data")
    return tags


def _blurred(image: Mapping[str, Any]) -> bool:
    return bool(_tags(image)["blurred"])


def _clean(image: Mapping[str, Any]) -> bool:
    tags = _tags(image)
    return not tags["blurred"] and not tags["occluded"]


def _zero_joints(annotation: dict[str, Any], keep: set[int]) -> bool:
    """Set every joint outside ``keep`` to 0, 0, 0 (score 0); False when none is left."""
    points = annotation["keypoints"]
    scores = annotation.get("scores") or []
    left = False
    for j in range(len(points) // 3):
        if j in keep:
            left = left or any(points[3 * j : 3 * j + 3])
            continue
        points[3 * j : 3 * j + 3] = [0, 0, 0]
        if scores:
            scores[j] = 0.0
    return left


def only_occluded_joints(gt: Mapping[str, Any], pred: Mapping[str, Any]) -> tuple[dict, dict]:
    """Copies of one sequence's ground truth and predictions holding only the hidden joints."""
    gt_copy, pred_copy = copy.deepcopy(dict(gt)), copy.deepcopy(dict(pred))
    hidden = {
        (a["image_id"], a["track_id"]): set(a.get("occluded_joints", [])) for a in gt_copy["annotations"]
    }
    gt_copy["annotations"] = [
        a for a in gt_copy["annotations"] if _zero_joints(a, hidden[(a["image_id"], a["track_id"])])
    ]
    pred_copy["annotations"] = [
        a
        for a in pred_copy["annotations"]
        if _zero_joints(a, hidden.get((a["image_id"], a.get("track_id")), set()))
    ]
    return gt_copy, pred_copy


def subset_matches(gt: Mapping[str, Mapping], pred: Mapping[str, Mapping], subset: str) -> Matches:
    """Per-sequence frame matches (poseval's PCKh rule) of predictions on one subset."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; subsets: {', '.join(SUBSETS)}")
    image_filter = {"blurred_frames": _blurred, "clean_frames": _clean}.get(subset)
    out: Matches = {}
    for name in sorted(gt):
        g, p = gt[name], pred[name]
        if subset == "occluded_joints":
            g, p = only_occluded_joints(g, p)
        frames = prepare_sequence(name, g, p, image_filter).frames
        out[name] = [match_frame(f, False, f"{name}, image {f.index}") for f in frames]
    return out


def mean_ap(matches: Matches, names: list[str] | None = None) -> float:
    """Mean over joints of poseval's AP on the pooled frames of ``names`` (default: all), counting
    only joints with ground truth in them: a subset without hidden eyes does not score 0 on eyes."""
    chosen = sorted(matches) if names is None else names
    frames = [m for name in chosen for m in matches[name]]
    if not frames:
        return float("nan")
    num_gt = np.sum([m.num_gt for m in frames], axis=0)
    return nan_mean(np.where(num_gt > 0, joint_ap(frames)[0], np.nan))


@dataclass(frozen=True)
class Difference:
    """mAP(a) - mAP(b) on all videos, with its paired bootstrap 95 % interval over videos."""

    value: float
    low: float
    high: float
    resamples: int


def paired_bootstrap(a: Matches, b: Matches, resamples: int = 1000, seed: int = 0) -> Difference:
    """Resample videos with replacement (the same draw for a and b) and take mAP(a) - mAP(b)."""
    if sorted(a) != sorted(b):
        raise ValueError("the two models were evaluated on different videos")
    names = sorted(a)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        draw = [names[k] for k in rng.integers(0, len(names), len(names))]
        diffs.append(mean_ap(a, draw) - mean_ap(b, draw))
    finite = np.array([d for d in diffs if np.isfinite(d)])
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (float("nan"), float("nan"))
    return Difference(mean_ap(a) - mean_ap(b), float(low), float(high), resamples)
