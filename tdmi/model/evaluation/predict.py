"""PoseTrack predictions for a data set: the one path shared by ``tdmi predict`` and validation.

Every person crop of the data set (ground-truth boxes or detections) goes through the network;
each heatmap peak goes back to image pixels through the inverse of the crop's affine, and its
score is the peak value times the box score. Results are written as the official format wants
them: one JSON per video with the ground truth's very ``images`` list (poseval matches frames by
position in it) and one annotation per person (17 x, y, 1 keypoints and 17 scores; joints the
layout does not evaluate are written as 0, 0, 0 with score 0). With ground-truth boxes the
track id is the ground truth's; with detections a tracker numbers the people, video by video in
frame order.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from tdmi.model.codec import decode_heatmaps, flip_test
from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.data.detections import DEFAULT_SCORE_THRESHOLD
from tdmi.model.data.posetrack import Sequence as VideoSequence
from tdmi.model.geometry import apply_affine, invert_affine
from tdmi.model.presets import PRESETS, ModelPreset, build_model, get_preset
from tdmi.model.tdmi import TDMIConfig
from tdmi.model.tracking import PoseTracker, TrackerConfig
from tdmi.model.training.distributed import resolve_device

__all__ = [
    "PersonPrediction",
    "PoseTrackerLike",
    "add_predict_command",
    "assign_tracks",
    "posetrack_results",
    "predict_people",
    "predict_posetrack",
    "write_results",
]

PERSON_CATEGORY = 1


@dataclass(frozen=True, eq=False)
class PersonPrediction:
    """One person in one frame: ``keypoints`` (J, 2) image pixels, ``scores`` (J,)."""

    sequence: str
    frame: int  # position in the sequence's images list
    box: np.ndarray  # (4,) xyxy image pixels
    box_score: float
    keypoints: np.ndarray
    scores: np.ndarray
    track_id: int


class PoseTrackerLike(Protocol):
    """What numbers people across frames: ``update`` gives one id per box of the next frame."""

    def update(self, boxes: np.ndarray, keypoints: np.ndarray) -> Any: ...


def predict_people(
    net: nn.Module,
    preset: ModelPreset,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    flip: bool = False,
    amp_dtype: torch.dtype | None = None,
    indices: Sequence[int] | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> list[PersonPrediction]:
    """Keypoints of every sample of ``dataset`` (or of ``indices`` only), in image pixels."""
    device = torch.device(device)
    source = dataset if indices is None else Subset(dataset, list(indices))
    loader = DataLoader(
        source,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    flip_index = preset.layout.flip_index()
    was_training = net.training
    net.eval()
    people: list[PersonPrediction] = []
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
                inputs = batch["inputs"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    heatmaps = flip_test(net, inputs, flip_index) if flip else net(inputs)
                coords, peaks = decode_heatmaps(heatmaps.float())
                people.extend(_to_people(coords.cpu().numpy(), peaks.cpu().numpy(), batch["meta"], preset))
    finally:
        net.train(was_training)
    return people


def _to_people(
    coords: np.ndarray, peaks: np.ndarray, meta: dict[str, Any], preset: ModelPreset
) -> list[PersonPrediction]:
    (in_h, in_w), (hm_h, hm_w) = preset.input_size, preset.heatmap_size
    stride = np.array([in_w / hm_w, in_h / hm_h])
    out = []
    for i in range(len(coords)):
        affine = np.asarray(meta["affine"][i], dtype=np.float64)
        box_score = float(meta["box_score"][i])
        out.append(
            PersonPrediction(
                sequence=str(meta["sequence"][i]),
                frame=int(meta["frame"][i]),
                box=np.asarray(meta["box"][i], dtype=np.float32),
                box_score=box_score,
                keypoints=apply_affine(coords[i] * stride, invert_affine(affine)).astype(np.float32),
                scores=(peaks[i] * box_score).astype(np.float32),
                track_id=int(meta["track_id"][i]),
            )
        )
    return out


def assign_tracks(
    people: Iterable[PersonPrediction], make_tracker: Callable[[], PoseTrackerLike]
) -> list[PersonPrediction]:
    """New track ids from one fresh tracker per video, fed frame by frame in order."""
    by_frame: dict[tuple[str, int], list[PersonPrediction]] = {}
    for person in people:
        by_frame.setdefault((person.sequence, person.frame), []).append(person)
    out: list[PersonPrediction] = []
    tracker: PoseTrackerLike | None = None
    current = None
    for sequence, frame in sorted(by_frame):
        if sequence != current:
            tracker, current = make_tracker(), sequence
        assert tracker is not None
        group = by_frame[(sequence, frame)]
        ids = tracker.update(np.stack([p.box for p in group]), np.stack([_with_scores(p) for p in group]))
        out.extend(replace(p, track_id=int(t)) for p, t in zip(group, ids))
    return out


def _with_scores(person: PersonPrediction) -> np.ndarray:
    return np.concatenate([person.keypoints, person.scores[:, None]], axis=1)


def posetrack_results(
    people: Iterable[PersonPrediction], sequences: Iterable[VideoSequence], evaluated: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Official-format results, one dict per video (every video of ``sequences``, even empty)."""
    results: dict[str, dict[str, Any]] = {}
    for seq in sequences:
        results[seq.name] = {
            "images": [dict(frame.record) for frame in seq.images],
            "annotations": [],
            "categories": [dict(c) for c in seq.categories],
        }
    keep = np.zeros(0, dtype=bool)
    for person in sorted(people, key=lambda p: (p.sequence, p.frame, p.track_id)):
        if person.sequence not in results:
            raise ValueError(f"prediction for unknown sequence {person.sequence!r}")
        if len(keep) != len(person.scores):
            keep = np.isin(np.arange(len(person.scores)), evaluated)
        seq_result = results[person.sequence]
        image = seq_result["images"][person.frame]
        seq_result["annotations"].append(_annotation(person, image, keep))
    return results


def _annotation(person: PersonPrediction, image: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    xy = np.where(keep[:, None], person.keypoints, 0.0)
    keypoints = np.concatenate([xy, keep[:, None].astype(np.float64)], axis=1)
    x1, y1, x2, y2 = (float(v) for v in person.box)
    return {
        "image_id": image["id"],
        "track_id": person.track_id,
        "category_id": PERSON_CATEGORY,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
        "scores": [round(float(s), 5) for s in np.where(keep, person.scores, 0.0)],
    }


def write_results(results: dict[str, dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """One ``<sequence>.json`` per video under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, result in results.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(result))
        paths.append(path)
    return paths


def predict_posetrack(
    net: nn.Module,
    preset: ModelPreset,
    dataset: PoseTrackClips,
    *,
    make_tracker: Callable[[], PoseTrackerLike] | None = None,
    **predict_options: Any,
) -> dict[str, dict[str, Any]]:
    """``predict_people`` + tracking (when a tracker is given) + ``posetrack_results``."""
    people = predict_people(net, preset, dataset, **predict_options)
    if make_tracker is not None:
        people = assign_tracks(people, make_tracker)
    return posetrack_results(people, dataset.sequences, preset.layout.evaluated)


def _predict_command(args: argparse.Namespace) -> int:
    preset = get_preset(args.model)
    if args.checkpoint is None and not args.random_weights:
        raise ValueError(
            f"{preset.name} has no weights without --checkpoint FILE; "
            "pass --random-weights to run untrained weights on purpose"
        )
    net = build_model(preset.name, args.checkpoint)
    device = resolve_device(args.device)
    net.to(device)
    data = Path(args.data)
    annotations = Path(args.annotations) if args.annotations else data / "annotations" / "val"
    dataset = PoseTrackClips(
        data,
        annotations,
        input_size=preset.input_size,
        radius=preset.config.radius if isinstance(preset.config, TDMIConfig) else None,
        layout=preset.layout,
        boxes=args.boxes or "gt",
        score_threshold=args.score_threshold,
    )
    # ids count from 0 in every video, as the ground truth's do
    tracker = None if args.boxes is None else lambda: PoseTracker(TrackerConfig(), itertools.count().__next__)
    results = predict_posetrack(
        net,
        preset,
        dataset,
        make_tracker=tracker,
        batch_size=args.batch_size,
        device=device,
        flip=args.flip,
        num_workers=args.num_workers,
        progress=True,
    )
    paths = write_results(results, args.out)
    people = sum(len(r["annotations"]) for r in results.values())
    print(f"wrote {len(paths)} sequence files ({people} people) to {args.out}")
    return 0


def add_predict_command(commands: argparse._SubParsersAction) -> None:
    """Register ``predict posetrack`` on the ``tdmi`` parser."""
    predict = commands.add_parser("predict", help="write predictions for a data set in its official format")
    kinds = predict.add_subparsers(dest="kind", required=True)
    cmd = kinds.add_parser("posetrack", help="PoseTrack 2017 (converted) / 2018 / 21 per-video JSON files")
    cmd.add_argument("--model", required=True, help=f"preset: {', '.join(PRESETS)}")
    cmd.add_argument("--checkpoint", default=None, help="weights (ours, or official HRNet for HRNet presets)")
    cmd.add_argument(
        "--random-weights", action="store_true", help="allow untrained weights (no --checkpoint)"
    )
    cmd.add_argument("--data", required=True, help="dataset root (the images' file_name is relative to it)")
    cmd.add_argument("--annotations", default=None, help="per-video JSONs (default DATA/annotations/val)")
    cmd.add_argument("--boxes", default=None, help="person detections (COCO results JSON); default: GT boxes")
    cmd.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="for --boxes")
    cmd.add_argument("--flip", action="store_true", help="average with the mirrored input's heatmaps")
    cmd.add_argument("--out", required=True, help="directory for <sequence>.json files")
    cmd.add_argument("--batch-size", type=int, default=32)
    cmd.add_argument("--num-workers", type=int, default=2)
    cmd.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    cmd.set_defaults(run=_predict_command)
