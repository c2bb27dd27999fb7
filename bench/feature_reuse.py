"""Feature reuse against exact mode: PoseTrack mAP and person-frames per second, in one run.

    python -m bench.feature_reuse [--data DIR | --videos 8 --frames 40 --seed 3]
        [--drift 0.75 0.85 0.9] [--streams 2] [--max-batch 16] [--json]

Synthetic held-out video (``tdmi synth``, generated here unless ``--data`` names a directory that
``tdmi synth --split val`` wrote) goes through the service's own inference path in-process:
``StreamSession`` -> ``Batcher`` -> ``InferenceEngine`` -> ``ModelRunner`` with the demo
checkpoint on the eager torch backend, ground-truth boxes as the client's boxes, the same batch
settings for every mode. Exact mode crops every clip with its key frame's box; reuse mode crops each
track with an anchor box kept while the box's IoU with it stays at or above the drift threshold,
and reuses per-frame backbone features (``tdmi.service.inference.feature_cache``).

Timing: the videos run in groups of ``--streams`` concurrent streams; in each of ``--repeats``
passes every group runs once per mode, modes interleaved (the order rotates from group to group
and pass to pass), so slow spells of a shared machine hit every mode alike. A warm-up group (not
counted) runs first. Throughput is person-frames per second of wall time from the first frame
pushed to the last result out; the table gives the median over the timed runs and the median of
the paired (same group, same pass) ratios to exact mode. Accuracy: every frame's results
of a mode, scored with the PoseTrack evaluator (poseval's numbers) against the ground truth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.hardware import cpu_model, software_versions
from bench.report import print_table
from tdmi.model.data.synth import SynthOptions, generate_dataset
from tdmi.model.evaluation import evaluate_posetrack_sequences
from tdmi.model.presets import build_model, get_preset
from tdmi.model.tdmi import TDMI
from tdmi.model.tracking import PoseTracker
from tdmi.protocol.poses import FramePoses
from tdmi.service.config import DEMO_CHECKPOINT
from tdmi.service.inference.backends import make_backend
from tdmi.service.inference.batcher import Batcher
from tdmi.service.inference.engine import InferenceEngine
from tdmi.service.inference.runner import ModelRunner
from tdmi.service.streaming.session import SessionOptions, StreamFrame, StreamSession
from tdmi.service.video import iter_frames

MODEL = "tdmi-tiny"
EXACT = "exact"


@dataclass
class Video:
    name: str
    annotation: dict[str, Any]  # the ground truth's PoseTrack file
    images: list[np.ndarray]
    boxes: list[np.ndarray]  # per frame (N, 5): ground-truth boxes with score 1

    @property
    def person_frames(self) -> int:
        return sum(len(b) for b in self.boxes)


@dataclass
class Run:
    """One group of videos through one mode."""

    seconds: float
    person_frames: int
    backbone_crops: int
    reanchored: int
    poses: dict[str, list[FramePoses]]


class GroundTruthBoxes:
    async def boxes_for(self, frame: StreamFrame, previous: dict[int, np.ndarray]) -> np.ndarray:
        assert frame.client_boxes is not None
        return frame.client_boxes


def load_videos(root: Path) -> list[Video]:
    """Decoded frames and per-frame ground-truth boxes of every video ``tdmi synth`` wrote."""
    videos = []
    for path in sorted((root / "annotations" / "val").glob("*.json")):
        annotation = json.loads(path.read_text())
        images = [f.image for f in iter_frames(root / "videos" / "val" / f"{path.stem}.mp4")]
        height, width = images[0].shape[:2]
        position = {image["id"]: i for i, image in enumerate(annotation["images"])}
        boxes: list[list[list[float]]] = [[] for _ in images]
        for person in annotation["annotations"]:
            if "bbox" not in person:
                continue
            x, y, w, h = person["bbox"]
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
            if x2 > x1 and y2 > y1:
                boxes[position[person["image_id"]]].append([x1, y1, x2, y2, 1.0])
        arrays = [np.asarray(b, dtype=np.float32).reshape(-1, 5) for b in boxes]
        videos.append(Video(path.stem, annotation, images, arrays))
    if not videos:
        raise SystemExit(
            f"no videos under {root}/annotations/val: give a directory `tdmi synth --split val` wrote"
        )
    return videos


async def run_group(runner: ModelRunner, videos: list[Video], drift: float | None, max_batch: int) -> Run:
    """``videos`` as concurrent streams through a fresh batcher and engine around ``runner``."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-device")
    engine = InferenceEngine(runner, Batcher(max_batch, 5.0, 64), executor)
    engine.start()
    radius = runner.preset.num_frames // 2
    options = SessionOptions(radius=radius, lookahead=radius, live=False)
    if drift is not None:
        options = replace(options, feature_reuse=True, reuse_drift_iou=drift)
    sessions = [StreamSession(v.name, engine, options, GroundTruthBoxes(), PoseTracker()) for v in videos]

    async def feed(session: StreamSession, video: Video) -> None:
        for i, (image, boxes) in enumerate(zip(video.images, video.boxes)):
            await session.push(StreamFrame(frame_id=i, image=image, client_boxes=boxes))
        await session.end()

    async def collect(session: StreamSession) -> list[FramePoses]:
        out = []
        async for outcome in session.outcomes():
            if outcome.poses is None:
                raise RuntimeError(f"{session.stream_id} frame {outcome.frame.frame_id}: {outcome.error}")
            out.append(outcome.poses)
        return out

    crops_before = runner.backbone_crops
    start = time.perf_counter()
    try:
        feeders = [asyncio.create_task(feed(s, v)) for s, v in zip(sessions, videos)]
        results = await asyncio.gather(*(collect(s) for s in sessions))
        await asyncio.gather(*feeders)
        seconds = time.perf_counter() - start
    finally:
        await engine.stop()
        executor.shutdown()
    leftover = [s.stream_id for s in sessions if s.feature_cache is not None and len(s.feature_cache)]
    if leftover:
        raise RuntimeError(f"feature caches not emptied at the end of {leftover}")
    return Run(
        seconds=seconds,
        person_frames=sum(v.person_frames for v in videos),
        backbone_crops=runner.backbone_crops - crops_before,
        reanchored=sum(s.anchors.reanchored for s in sessions if s.anchors is not None),
        poses={v.name: r for v, r in zip(videos, results)},
    )


def predictions(video: Video, poses: list[FramePoses]) -> dict[str, Any]:
    """A PoseTrack results file for ``video``: the ground truth's images, one annotation per person."""
    images = video.annotation["images"]
    annotations = [
        {
            "image_id": images[frame.index]["id"],
            "track_id": person.track_id,
            "category_id": 1,
            "keypoints": [v for x, y, _ in person.keypoints for v in (x, y, 1.0)],
            "scores": [s * person.box_score for *_, s in person.keypoints],
        }
        for frame in poses
        for person in frame.persons
    ]
    return {
        "images": images,
        "annotations": annotations,
        "categories": video.annotation.get("categories", []),
    }


def keypoint_shift(reference: list[FramePoses], other: list[FramePoses]) -> list[float]:
    """Pixel distances between the same persons' joints in two modes (same boxes, same order)."""
    shifts: list[float] = []
    for a, b in zip(reference, other):
        for pa, pb in zip(a.persons, b.persons):
            shifts.extend(
                np.linalg.norm(np.asarray(pa.keypoints)[:, :2] - np.asarray(pb.keypoints)[:, :2], axis=1)
            )
    return shifts


def flop_ceiling(network: TDMI, shape: tuple[int, ...]) -> dict[str, float]:
    """FLOPs of the backbone per frame and of the rest per clip, and the speed-up they allow at most:
    exact mode pays T backbone frames per clip, reuse at best one."""
    clip = torch.randn(shape)
    with torch.inference_mode(), FlopCounterMode(display=False) as backbone:
        stages = network.forward_frame_features(clip.flatten(0, 1))
    with torch.inference_mode(), FlopCounterMode(display=False) as rest:
        network.forward_from_frame_features([f.unflatten(0, shape[:2]) for f in stages])
    frames = shape[1]
    per_frame, per_clip = backbone.get_total_flops() / frames, rest.get_total_flops()
    return {
        "backbone_gflop_per_frame": per_frame / 1e9,
        "rest_gflop_per_clip": per_clip / 1e9,
        "max_speedup": (frames * per_frame + per_clip) / (per_frame + per_clip),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            generate_dataset(
                SynthOptions(out=root, videos=args.videos, split="val", frames=args.frames, seed=args.seed)
            )
        videos = load_videos(root)
    preset = get_preset(MODEL)
    device = torch.device("cpu")
    network = build_model(MODEL, args.checkpoint)
    assert isinstance(network, TDMI)
    ceiling = flop_ceiling(network, preset.input_shape(1))
    backend = make_backend("torch", network, preset, device, "fp32", Path(tempfile.gettempdir()), "bench")
    runner = ModelRunner(preset, backend, device, args.max_batch, feature_reuse=True)
    runner.warm_up()
    modes: list[tuple[str, float | None]] = [(EXACT, None)] + [(f"reuse@{d:g}", d) for d in args.drift]

    warm = [Video(v.name, v.annotation, v.images[:8], v.boxes[:8]) for v in videos[: args.streams]]
    for _, drift in modes:  # not counted: first-call costs of every path and shape
        asyncio.run(run_group(runner, warm, drift, args.max_batch))

    groups = [videos[i : i + args.streams] for i in range(0, len(videos), args.streams)]
    runs: dict[str, list[Run]] = {name: [] for name, _ in modes}
    for turn in range(args.repeats):
        for g, group in enumerate(groups):
            first = (g + turn) % len(modes)
            for name, drift in modes[first:] + modes[:first]:
                runs[name].append(asyncio.run(run_group(runner, group, drift, args.max_batch)))

    gt = {v.name: v.annotation for v in videos}
    rows = []
    exact_poses = {k: p for r in runs[EXACT] for k, p in r.poses.items()}
    for name, _ in modes:
        mode_runs = runs[name]
        poses = {k: p for r in mode_runs for k, p in r.poses.items()}
        metrics = evaluate_posetrack_sequences(gt, {v.name: predictions(v, poses[v.name]) for v in videos})
        rates = [r.person_frames / r.seconds for r in mode_runs]
        ratios = [
            r.person_frames / r.seconds / (e.person_frames / e.seconds)
            for r, e in zip(mode_runs, runs[EXACT])
        ]
        person_frames = sum(r.person_frames for r in mode_runs)
        shifts = [s for v in videos for s in keypoint_shift(exact_poses[v.name], poses[v.name])]
        rows.append(
            {
                "mode": name,
                "map": metrics.ap.total,
                "person_frames_per_s": statistics.median(rates),
                "speedup": statistics.median(ratios),
                "backbone_crops_per_person_frame": sum(r.backbone_crops for r in mode_runs) / person_frames,
                "reanchors_per_100_person_frames": 100.0
                * sum(r.reanchored for r in mode_runs)
                / person_frames,
                "median_shift_px": float(np.median(shifts)),
                "p90_shift_px": float(np.percentile(shifts, 90)),
                "group_rates": rates,
            }
        )
    return {
        "bench": "feature_reuse",
        "command": "python -m bench.feature_reuse " + " ".join(sys.argv[1:]),
        "device": f"{cpu_model()} ({torch.get_num_threads()} torch threads)",
        "software": software_versions(),
        "model": f"{MODEL} ({Path(args.checkpoint).name})",
        "data": args.data
        or f"tdmi synth --videos {args.videos} --frames {args.frames} --seed {args.seed} --split val",
        "videos": len(videos),
        "person_frames": sum(v.person_frames for v in videos),
        "groups": len(groups),
        "streams_per_group": args.streams,
        "repeats": args.repeats,
        "max_batch": args.max_batch,
        "flop_ceiling": ceiling,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.feature_reuse", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", help="a directory `tdmi synth --split val` wrote (default: generate one)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seed", type=int, default=3, help="held out: the demo model trained on seed 1")
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument(
        "--drift", type=float, nargs="+", default=[0.75, 0.85, 0.9], help="reuse_drift_iou values"
    )
    parser.add_argument("--streams", type=int, default=2, help="concurrent streams per timed group")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the groups")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if any(not 0 < d <= 1 for d in args.drift):
        parser.error("--drift values must be in (0, 1]")
    report = measure(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    ceiling = report["flop_ceiling"]
    print(f"{report['device']}; {report['model']}")
    print(f"{report['videos']} videos, {report['person_frames']} person-frames ({report['data']})")
    print(
        f"backbone {ceiling['backbone_gflop_per_frame']:.3f} GFLOP/frame, "
        f"rest {ceiling['rest_gflop_per_clip']:.3f} GFLOP/clip: "
        f"reuse is at most {ceiling['max_speedup']:.2f}x exact by FLOPs"
    )
    print(
        f"{report['groups']} groups of {report['streams_per_group']} streams x {report['repeats']} passes, "
        f"max batch {report['max_batch']}"
    )
    print_table(
        ["mode", "mAP", "person-frames/s", "x exact", "backbone/pf", "re-anchors/100pf", "median shift px"],
        [
            [
                r["mode"],
                r["map"],
                r["person_frames_per_s"],
                r["speedup"],
                r["backbone_crops_per_person_frame"],
                r["reanchors_per_100_person_frames"],
                r["median_shift_px"],
            ]
            for r in report["rows"]
        ],
    )


if __name__ == "__main__":
    main()
