"""Crop boxes that stay put: the session side of feature reuse.

In reuse mode each track is cropped with one *anchor* box for as long as its person stays well
inside it, so a frame's backbone features can serve every window that holds it (see
``tdmi.service.inference.feature_cache``). The anchor is the person's box when first seen (the crop is
then grown from it exactly as in exact mode); when the person's current box drifts from it (box
IoU below ``min_iou``) the track is re-anchored on the current box, and the new anchor's frames
are computed afresh.

Identity before inference: the session's tracker already numbers each frame's boxes when the
frame is submitted (``PoseTracker.update`` on the boxes alone, i.e. Hungarian matching on IoU with
each track's last box), so anchors simply follow those track ids; no second matcher is needed. A
wrong association costs only that person's crop, never a mix-up between persons' results: a box
far from the anchor of the id it got fails the IoU test and is re-anchored on itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tdmi.model.tracking import box_iou

__all__ = ["Anchor", "TrackAnchors"]


@dataclass(frozen=True, eq=False)
class Anchor:
    """An anchor's id (unique in its stream) and its (4,) xyxy box."""

    anchor_id: int
    box: np.ndarray


class TrackAnchors:
    """Per track, the box its crops are cut with; one per stream."""

    def __init__(self, min_iou: float):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.min_iou = min_iou
        self._anchors: dict[int, Anchor] = {}
        self._ids = itertools.count()
        self.reanchored = 0  # anchors replaced because their person drifted

    def assign(self, track_ids: np.ndarray, boxes: np.ndarray) -> list[Anchor]:
        """The anchor of each person (``track_ids`` (N,), current ``boxes`` (N, 4)) of a frame.

        Tracks absent from this frame lose their anchor: when they come back, their window's
        frames are cropped afresh around where they are then.
        """
        anchors: dict[int, Anchor] = {}
        for track_id, box in zip(track_ids.tolist(), np.asarray(boxes, dtype=np.float64)):
            anchor = self._anchors.get(track_id)
            if anchor is not None and box_iou(box, anchor.box)[0, 0] < self.min_iou:
                self.reanchored += 1
                anchor = None
            if anchor is None:
                anchor = Anchor(next(self._ids), box.copy())
            anchors[track_id] = anchor
        self._anchors = anchors
        return [anchors[t] for t in track_ids.tolist()]
