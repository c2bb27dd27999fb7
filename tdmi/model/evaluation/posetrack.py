"""PoseTrack multi-person pose evaluation that gives the official poseval's numbers.

    from tdmi.model.evaluation import evaluate_posetrack
    metrics = evaluate_posetrack(Path("annotations/val"), Path("predictions"))
    print(metrics.table()); metrics.ap.total; metrics.tracking.mota.total; metrics.jitter.mean

Inputs are official PoseTrack 2018/21 per-sequence files (or the same dicts in memory). The
numbers reproduce poseval (github leonid-pishchulin/poseval, commit 4258a15, Python 3) on
the same files; see ``posetrack_io`` for its reading rules, ``posetrack_match`` for the PCKh
matching, ``posetrack_ap`` and ``posetrack_mota`` for the metrics, ``jitter`` for temporal
stability. Where poseval crashes we
raise ValueError instead, or (tracking on sequences of one frame) leave those sequences out.

``image_filter(gt_image) -> bool`` receives each ground-truth ``images`` entry (the JSON object,
with any extra keys the data carries, e.g. ``{"occluded": true}`` in synthetic data) and
restricts evaluation to the frames it accepts: the others are treated like unlabelled frames,
left out of AP and of tracking alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tdmi.model.evaluation.jitter import Jitter, sequence_jitter
from tdmi.model.evaluation.posetrack_ap import joint_ap, nan_mean
from tdmi.model.evaluation.posetrack_io import (
    EvalSequence,
    ImageFilter,
    load_sequence_dirs,
    prepare_sequence,
)
from tdmi.model.evaluation.posetrack_match import FrameMatch, match_frame
from tdmi.model.evaluation.posetrack_metrics import JointValues, PoseTrackMetrics, TrackingMetrics
from tdmi.model.evaluation.posetrack_mota import MotCounts, mot_counts, mot_metrics

__all__ = ["evaluate_posetrack", "evaluate_posetrack_sequences"]

SequenceData = Mapping[str, Any]


def evaluate_posetrack(
    gt_dir: Path | str, pred_dir: Path | str, *, image_filter: ImageFilter | None = None
) -> PoseTrackMetrics:
    """Evaluate ``pred_dir/<name>.json`` against ``gt_dir/<name>.json`` for every sequence."""
    data = load_sequence_dirs(Path(gt_dir), Path(pred_dir))
    return evaluate_posetrack_sequences(
        {name: gt for name, (gt, _) in data.items()},
        {name: pred for name, (_, pred) in data.items()},
        image_filter=image_filter,
    )


def _named(data: Mapping[str, SequenceData] | Sequence[SequenceData], kind: str) -> dict[str, SequenceData]:
    if isinstance(data, Mapping):
        return dict(data)
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return {f"{k:04d}": seq for k, seq in enumerate(data)}
    raise ValueError(f"{kind}: expected a list of sequence dicts or a mapping name -> sequence dict")


def evaluate_posetrack_sequences(
    gt: Mapping[str, SequenceData] | Sequence[SequenceData],
    pred: Mapping[str, SequenceData] | Sequence[SequenceData],
    *,
    image_filter: ImageFilter | None = None,
) -> PoseTrackMetrics:
    """Evaluate in-memory sequences: mappings name -> sequence dict, or lists paired by position.

    Each sequence dict has the official file's content (``images``, ``annotations`` and
    optionally ``categories``). Tracking is evaluated when every predicted person has a
    ``track_id``.
    """
    gt_named, pred_named = _named(gt, "ground truth"), _named(pred, "predictions")
    if gt_named.keys() != pred_named.keys():
        lacking = sorted(gt_named.keys() - pred_named.keys())
        extra = sorted(pred_named.keys() - gt_named.keys())
        raise ValueError(f"sequence names differ: no predictions for {lacking}, no ground truth for {extra}")
    sequences = [
        prepare_sequence(name, gt_named[name], pred_named[name], image_filter) for name in sorted(gt_named)
    ]
    sequences = [s for s in sequences if s.frames]
    if not sequences:
        raise ValueError("no labelled ground-truth frame to evaluate (after the image filter)")
    with_tracks = all(
        track_id is not None for s in sequences for f in s.frames for track_id in f.pred.track_ids
    )
    if with_tracks:
        _require_gt_tracks(sequences)
    matches = {
        s.name: [match_frame(f, with_tracks, f"{s.name}, image {f.index}") for f in s.frames]
        for s in sequences
    }
    counts = {name: _sequence_counts(frames) for name, frames in matches.items()}
    jitter = {s.name: sequence_jitter(s.frames, matches[s.name]) for s in sequences}
    per_sequence = {name: _summarise([matches[name]], [counts[name]], [jitter[name]]) for name in matches}
    overall = _summarise(list(matches.values()), list(counts.values()), list(jitter.values()))
    return replace(overall, per_sequence=per_sequence)


def _require_gt_tracks(sequences: list[EvalSequence]) -> None:
    for s in sequences:
        for f in s.frames:
            if any(track_id is None for track_id in f.gt.track_ids):
                raise ValueError(f"{s.name}, image {f.index}: a ground-truth person has no track_id")


def _sequence_counts(frames: list[FrameMatch]) -> MotCounts | None:
    """MOT counts of one sequence; None without tracks or with one frame (poseval fails on it)."""
    pairs = [m.pairs for m in frames if m.pairs is not None]
    return mot_counts(pairs) if len(pairs) >= 2 else None


def _summarise(
    sequences: list[list[FrameMatch]], counts: list[MotCounts | None], jitter: list[Jitter]
) -> PoseTrackMetrics:
    """AP over all frames of the sequences; MOT over those that have counts; jitter summed."""
    frames = [m for sequence in sequences for m in sequence]
    ap, precision, recall = joint_ap(frames)
    tracked = [c for c in counts if c is not None]
    return PoseTrackMetrics(
        ap=JointValues.of(ap, nan_mean(ap)),
        precision=JointValues.of(precision, nan_mean(precision)),
        recall=JointValues.of(recall, nan_mean(recall)),
        num_frames=len(frames),
        num_sequences=len(sequences),
        tracking=_tracking(tracked) if tracked else None,
        jitter=sum(jitter, Jitter.zero()),
    )


def _tracking(sequences: list[MotCounts]) -> TrackingMetrics:
    counts = MotCounts.zeros()
    for c in sequences:  # summed in sequence order, as poseval does
        counts = counts + c
    values = {name: JointValues.of(*v) for name, v in mot_metrics(counts).items()}
    return TrackingMetrics(
        mota=values["mota"],
        motp=values["motp"],
        precision=values["precision"],
        recall=values["recall"],
        num_frames=counts.num_frames,
        counts={
            "misses": int(counts.misses.sum()),
            "switches": int(counts.switches.sum()),
            "false_positives": int(counts.false_positives.sum()),
            "objects": int(counts.objects.sum()),
            "detections": int(counts.detections.sum()),
        },
    )
