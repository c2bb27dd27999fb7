"""One frame's predictions against its ground truth, as poseval's ``assignGTmulti`` pairs them.

A predicted joint is correct when it lies within half the ground-truth person's head size
(0.6 x the diagonal of ``bbox_head``), PCKh@0.5. Each prediction goes to the ground-truth person
it gets most joints right on (as a fraction of that person's annotated joints), and each
ground-truth person keeps only the best such prediction; every predicted joint then becomes one
scored detection, true when it is within the threshold of its person's joint. For tracking, every
joint is a separate set of objects (ground-truth people with that joint) and hypotheses
(predicted people with it), with the joint distance as the cost of a pair within threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tdmi.model.evaluation.posetrack_io import NUM_JOINTS, EvalFrame

__all__ = ["DIST_THRESHOLD", "FrameMatch", "JointPairs", "match_frame"]

DIST_THRESHOLD = 0.5  # fraction of the head size


@dataclass(frozen=True, eq=False)
class JointPairs:
    """Tracking input of one joint in one frame: ids and the (objects, hypotheses) distances."""

    gt_ids: tuple[int | None, ...]
    pred_ids: tuple[int | None, ...]
    distances: np.ndarray  # (len(gt_ids), len(pred_ids)); nan where the pair may not match


@dataclass(frozen=True, eq=False)
class FrameMatch:
    scores: tuple[np.ndarray, ...]  # per joint: the scores of the predicted joints, in person order
    labels: tuple[np.ndarray, ...]  # per joint: True where that prediction is correct
    num_gt: np.ndarray  # (15,) annotated ground-truth joints
    pred_of_gt: np.ndarray  # (G,) the prediction assigned to each ground-truth person, -1 for none
    pairs: tuple[JointPairs, ...] | None  # per joint; None when tracks are not evaluated


# poseval's stand-in when a frame lacks predictions or ground truth: one object and one
# hypothesis, both with id 0, that may not match (a miss and a false positive per joint)
_LONE_PAIR = JointPairs((0,), (0,), np.full((1, 1), np.nan))


def _distances(frame: EvalFrame) -> np.ndarray:
    """(P, G, 15) joint distance over head size; inf where either joint is missing."""
    gt, pred = frame.gt, frame.pred
    both = pred.present[:, None, :] & gt.present[None, :, :]
    offset = gt.xy[None, :, :, :] - pred.xy[:, None, :, :]
    # the squared length through matmul's vector-vector path, which is np.dot's: the very sum
    # poseval's np.linalg.norm of one offset takes (np.linalg.norm(axis=-1) rounds differently)
    length = np.sqrt((offset[..., None, :] @ offset[..., :, None])[..., 0, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = length / gt.head_sizes[None, :, None]
    return np.where(both, dist, np.inf)


def _assign(match: np.ndarray, num_gt_joints: np.ndarray) -> np.ndarray:
    """For each ground-truth person the prediction assigned to it, -1 for none."""
    pck = match.sum(axis=2).astype(np.float64)
    annotated = num_gt_joints > 0
    pck[:, annotated] /= num_gt_joints[annotated]
    best_gt = np.argmax(pck, axis=1)
    keep = np.zeros_like(pck, dtype=bool)
    keep[np.arange(len(pck)), best_gt] = True
    pck = np.where(keep, pck, 0.0)
    pred_of_gt = np.argmax(pck, axis=0)
    pred_of_gt[np.max(pck, axis=0) == 0] = -1
    return pred_of_gt


def match_frame(frame: EvalFrame, with_tracks: bool, where: str) -> FrameMatch:
    """Score labels for AP and, ``with_tracks``, the per-joint tracking input of one frame."""
    gt, pred = frame.gt, frame.pred
    labels = np.zeros((len(pred), NUM_JOINTS), dtype=bool)
    pairs: tuple[JointPairs, ...] | None = (_LONE_PAIR,) * NUM_JOINTS if with_tracks else None
    pred_of_gt = np.full(len(gt), -1, dtype=np.intp)
    if len(pred) and len(gt):
        if (gt.present.any(axis=1) & np.isnan(gt.head_sizes)).any():
            raise ValueError(f"{where}: a ground-truth person has no 'bbox_head' (needed for the head size)")
        dist = _distances(frame)
        match = dist <= DIST_THRESHOLD
        pred_of_gt = _assign(match, gt.present.sum(axis=1))
        for g, p in enumerate(pred_of_gt):
            if p >= 0:
                labels[p] = match[p, g]
        if with_tracks:
            pairs = tuple(_joint_pairs(frame, dist, match, j) for j in range(NUM_JOINTS))
    per_joint = [pred.present[:, j] for j in range(NUM_JOINTS)]
    return FrameMatch(
        scores=tuple(pred.scores[has, j] for j, has in enumerate(per_joint)),
        labels=tuple(labels[has, j] for j, has in enumerate(per_joint)),
        num_gt=gt.present.sum(axis=0),
        pred_of_gt=pred_of_gt,
        pairs=pairs,
    )


def _joint_pairs(frame: EvalFrame, dist: np.ndarray, match: np.ndarray, joint: int) -> JointPairs:
    gt_rows = np.flatnonzero(frame.gt.present[:, joint])
    pred_rows = np.flatnonzero(frame.pred.present[:, joint])
    rows = np.ix_(pred_rows, gt_rows)
    distances = np.where(match[:, :, joint][rows], dist[:, :, joint][rows], np.nan).T
    return JointPairs(
        gt_ids=tuple(frame.gt.track_ids[r] for r in gt_rows),
        pred_ids=tuple(frame.pred.track_ids[r] for r in pred_rows),
        distances=distances,
    )
