"""``python -m bench tracking``: how well the service keeps track ids, on real and synthetic video.

    python -m bench tracking --video vtest.avi [--frames 0] [--model NAME[=CKPT]] [--detector SPEC]
    python -m bench tracking --synthetic 12 [--synthetic-frames 120] [--seed 43]

Each video goes through a real server as a video job (``POST /v1/pose``), so what is measured is
what a user gets: the detector on its schedule, boxes propagated in between, the tracker.

On a real video without ground truth (``--video``): the number of track ids, the distribution of
track lengths (frames in which an id appears) and the *static tracks*: ids that last at least
``STATIC_MIN_FRAMES`` frames while their box centre never moves more than half a median box height
from where it started. On a street of walking people such a track is almost always a false
detection that holds on (a door frame, a sign), so fewer is better; a person standing still for
two seconds counts too, so it is an upper bound on the persistent false tracks.

On synthetic video with ground truth (``--synthetic N``: N videos generated here with ``--seed``):
poseval's MOTA, ID switches, misses and false positives, and AP, once with the ground-truth boxes
given as the job's boxes (tracking alone) and once with the service's detector.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.hardware import add_run_arguments, default_model_spec, set_threads
from bench.job import cut_video, run_job
from bench.report import emit, print_table, report_header
from tdmi.model.data.synth import SynthOptions, generate_dataset
from tdmi.model.evaluation.posetrack import evaluate_posetrack_sequences
from tdmi.model.jsonfile import read_json
from tdmi.model.presets import get_preset
from tdmi.service.config import Settings
from tdmi.service.weights.resolve import resolve_detector, weights_store
from tests.helpers.server import ServerProcess

__all__ = ["add_arguments", "main", "track_statistics"]

STATIC_MIN_FRAMES = 50  # two seconds at 25 fps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="a real video (statistics without ground truth)")
    source.add_argument("--synthetic", type=int, metavar="N", help="N synthetic videos with ground truth")
    parser.add_argument("--frames", type=int, default=0, help="--video: frames from its start (0: all)")
    parser.add_argument("--save-result", type=Path, help="--video: also write the job's JSON result here")
    parser.add_argument("--synthetic-frames", type=int, default=120, help="frames per synthetic video")
    parser.add_argument("--seed", type=int, default=43, help="seed of the synthetic videos")
    parser.add_argument("--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny")
    parser.add_argument("--detector", help="detector spec or catalogue name (default: the service's)")
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    spec = args.model or default_model_spec(torch.device("cpu"))
    settings = Settings()
    detector = resolve_detector(args.detector, weights_store(settings))
    report = report_header("tracking", torch.device("cpu"))
    report["settings"] = {
        "model": spec.split("=")[0],
        "detector": detector,
        "tracking": _tracking_settings(settings),
    }
    with tempfile.TemporaryDirectory(prefix="tdmi-bench-tracking-") as tmp:
        server = ServerProcess(Path(tmp) / "server", "--model", spec, env={"TDMI_DETECTOR": detector})
        try:
            server.wait_ready(timeout=600)
            if args.video is not None:
                report["video"] = _real_video(server.base, args, Path(tmp))
            else:
                evaluated = get_preset(spec.split("=")[0]).layout.evaluated
                report["synthetic"] = _synthetic(server.base, args, Path(tmp) / "synth", evaluated)
        finally:
            server.stop()
    emit(report, args.json, _render)


def _tracking_settings(settings: Settings) -> dict[str, Any]:
    names = [n for n in Settings.model_fields if n.startswith("track_")] + ["detect_every", "job_box_lag"]
    return {n: getattr(settings, n) for n in names}


def _real_video(base: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    clip = cut_video(args.video, args.frames, tmp / "clip.mp4") if args.frames else args.video
    result = run_job(base, clip)
    if args.save_result is not None:  # to look at where tracks break
        args.save_result.write_text(json.dumps(result))
    return {"name": args.video.name, **track_statistics(result["frames"])}


def track_statistics(frames: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Track ids, track lengths and static tracks of a job result's ``frames``."""
    boxes: dict[int, list[np.ndarray]] = defaultdict(list)
    count = persons = 0
    for frame in frames:
        count += 1
        for person in frame["persons"]:
            persons += 1
            boxes[int(person["track_id"])].append(np.asarray(person["box"], dtype=np.float64))
    lengths = np.array(sorted(len(b) for b in boxes.values()), dtype=np.int64)
    static = [t for t, b in boxes.items() if _is_static(np.stack(b))]
    quantiles = np.percentile(lengths, [50, 90]) if len(lengths) else [0.0, 0.0]
    return {
        "frames": count,
        "persons_per_frame": persons / max(count, 1),
        "track_ids": len(boxes),
        "one_frame_tracks": int((lengths == 1).sum()),
        "tracks_under_5_frames": int((lengths < 5).sum()),
        "median_length": float(quantiles[0]),
        "p90_length": float(quantiles[1]),
        "longest": int(lengths.max()) if len(lengths) else 0,
        "static_tracks": len(static),
        "static_track_frames": int(sum(len(boxes[t]) for t in static)),
    }


def _is_static(boxes: np.ndarray) -> bool:
    if len(boxes) < STATIC_MIN_FRAMES:
        return False
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    height = float(np.median(boxes[:, 3] - boxes[:, 1]))
    return bool(np.linalg.norm(centres - centres[0], axis=1).max() < 0.5 * height)


def _synthetic(base: str, args: argparse.Namespace, out: Path, evaluated: Sequence[int]) -> dict[str, Any]:
    options = SynthOptions(
        out=out, videos=args.synthetic, split="bench", frames=args.synthetic_frames, seed=args.seed
    )
    generate_dataset(options)
    gt = {p.stem: read_json(p) for p in sorted((out / "annotations" / "bench").glob("*.json"))}
    rows = {}
    for boxes in ("ground_truth", "detector"):
        pred = {}
        for name, sequence in gt.items():
            video = out / "videos" / "bench" / f"{name}.mp4"
            given = _gt_boxes(sequence) if boxes == "ground_truth" else None
            pred[name] = _posetrack_prediction(run_job(base, video, boxes=given), sequence, evaluated)
        metrics = evaluate_posetrack_sequences(gt, pred)
        tracking = metrics.tracking
        assert tracking is not None  # every predicted person has a track id
        rows[boxes] = {
            "mota": tracking.mota.total,
            "ap": metrics.ap.total,
            **tracking.counts,
            "track_ids": sum(len({a["track_id"] for a in p["annotations"]}) for p in pred.values()),
            "gt_tracks": sum(len({a["track_id"] for a in s["annotations"]}) for s in gt.values()),
        }
    return {"videos": len(gt), "frames_per_video": args.synthetic_frames, "seed": args.seed, "rows": rows}


def _gt_boxes(sequence: dict[str, Any]) -> dict[str, list[list[float]]]:
    """The job form's ``boxes``: frame index -> x1, y1, x2, y2 of every annotated person."""
    index = {image["id"]: i for i, image in enumerate(sequence["images"])}
    boxes: dict[str, list[list[float]]] = {str(i): [] for i in range(len(sequence["images"]))}
    for person in sequence["annotations"]:
        x, y, w, h = person["bbox"]
        boxes[str(index[person["image_id"]])].append([x, y, x + w, y + h])
    return boxes


def _posetrack_prediction(
    result: dict[str, Any], sequence: dict[str, Any], evaluated: Sequence[int]
) -> dict[str, Any]:
    """A job result in PoseTrack's format, on the ground truth's images (same order); joints the
    layout does not evaluate are left out, as ``tdmi predict posetrack`` leaves them."""
    images = sequence["images"]
    annotations = []
    for frame in result["frames"]:
        image = images[frame["index"]]
        for person in frame["persons"]:
            points = np.asarray(person["keypoints"], dtype=np.float64)
            keep = np.isin(np.arange(len(points)), evaluated)
            x1, y1, x2, y2 = person["box"]
            annotations.append(
                {
                    "image_id": image["id"],
                    "track_id": person["track_id"],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "keypoints": np.column_stack([points[:, :2], keep]).reshape(-1).tolist(),
                    "scores": np.where(keep, points[:, 2], 0.0).tolist(),
                }
            )
    return {"images": images, "annotations": annotations}


def _render(report: dict[str, Any]) -> None:
    settings = report["settings"]
    print(f"{settings['model']}, detector {settings['detector']}, {json.dumps(settings['tracking'])}")
    if "video" in report:
        stats = report["video"]
        print_table(list(stats), [list(stats.values())])
        return
    synthetic = report["synthetic"]
    videos, frames, seed = synthetic["videos"], synthetic["frames_per_video"], synthetic["seed"]
    print(f"{videos} synthetic videos x {frames} frames, seed {seed}")
    rows = synthetic["rows"]
    columns = list(next(iter(rows.values())))
    print_table(["boxes", *columns], [[name, *row.values()] for name, row in rows.items()])
