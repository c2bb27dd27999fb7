"""``python -m bench pipeline``: every stage of the service's path alone, so the slowest is visible.

    python -m bench pipeline [--device cpu|cuda] [--model NAME[=CKPT]] [--persons 4]
                             [--max-batch 16] [--backend torch] [--precision fp32] [--json]

Stages, each timed on its own on 640x480 frames with K persons:
- ``decode-video``: PyAV decoding of an MP4 (video jobs), frames/s over the whole file;
- ``decode-jpeg``: one live frame's JPEG to RGB (``tdmi.service.images.decode_image``);
- ``detect``: the HOG person detector on one frame (it runs every ``TDMI_DETECT_EVERY`` frames;
  the amortised cost per frame is also given);
- ``crop``, ``model``, ``post``: the model runner on full batches of ``--max-batch`` clips
  (frames of K persons), the stage times it reports itself (device synchronised per stage):
  upload and crop+warp on the device; the backend's forward pass; heatmap decoding and mapping
  back to image pixels.
Per frame: the stage's time for one frame of K persons. The slowest stage bounds the service.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.hardware import (
    add_run_arguments,
    default_model_spec,
    device_from_name,
    parse_model_spec,
    set_threads,
)
from bench.load import person_boxes, synthetic_jpegs
from bench.report import emit, print_table, report_header
from tdmi.model.presets import build_model
from tdmi.service.detection.hog import HogPeopleDetector
from tdmi.service.images import decode_image
from tdmi.service.inference.backends import BackendKind, Precision, make_backend
from tdmi.service.inference.runner import ModelRunner
from tdmi.service.inference.work import FrameWork
from tdmi.service.video.decode import iter_frames
from tdmi.service.video.encode import OverlayWriter

__all__ = ["add_arguments", "main", "measure"]

DETECT_EVERY = 5  # the service's default cadence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny on CPU, tdmi-w48 on GPU"
    )
    parser.add_argument("--backend", default="torch", choices=["torch", "torchscript", "onnxruntime"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="GPU only")
    parser.add_argument("--persons", type=int, default=4, help="persons per frame")
    parser.add_argument("--max-batch", type=int, help="clips per model batch (default 16 on CPU, 64 on GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per stage")
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    device = device_from_name(args.device)
    set_threads(args.threads)
    gpu = device.type == "cuda"
    spec = args.model or default_model_spec(device)
    max_batch = args.max_batch or (64 if gpu else 16)
    report = measure(spec, device, args.backend, args.precision, args.persons, max_batch, args.repeats)
    emit(report, args.json, _render)


def measure(
    spec: str,
    device: torch.device,
    backend: BackendKind,
    precision: Precision,
    persons: int,
    max_batch: int,
    repeats: int,
) -> dict[str, Any]:
    report = report_header("pipeline", device)
    preset, checkpoint = parse_model_spec(spec)
    report["settings"] = {
        "model": preset.name,
        "backend": backend,
        "precision": precision,
        "persons": persons,
        "max_batch": max_batch,
        "frame": "640x480",
        "detect_every": DETECT_EVERY,
    }
    jpegs = synthetic_jpegs(max(repeats + 2, preset.num_frames), 3)
    images = [decode_image(j) for j in jpegs]
    stages: dict[str, dict[str, float]] = {}

    video_seconds, video_frames = _decode_video(images, repeats)
    stages["decode-video"] = _stage(video_seconds / video_frames, 1)
    stages["decode-jpeg"] = _stage(_median(lambda i: decode_image(jpegs[i % len(jpegs)]), repeats), 1)
    hog = HogPeopleDetector()
    detect = _median(lambda i: hog.detect(images[i % len(images)]), max(2, repeats // 2))
    stages["detect"] = _stage(detect, 1)
    stages["detect-amortised"] = _stage(detect / DETECT_EVERY, 1)

    frames_per_batch = max(1, max_batch // persons)
    with tempfile.TemporaryDirectory(prefix="tdmi-bench-") as cache:
        network = build_model(preset.name, checkpoint)
        runner = make_backend(
            backend, network, preset, device, precision, Path(cache), "bench", threads=torch.get_num_threads()
        )
    laps: dict[str, list[float]] = defaultdict(list)
    model_runner = ModelRunner(preset, runner, device, max_batch, lambda stage, s: laps[stage].append(s))
    model_runner.warm_up()
    works = _works(images, preset.num_frames, persons, frames_per_batch)
    for _ in range(repeats + 2):
        model_runner.run(works)
    for name in ("crop", "model", "post"):
        stages[name] = _stage(statistics.median(laps[name][2:]), frames_per_batch)

    report["stages"] = stages
    bounding = {k: v for k, v in stages.items() if k != "detect"}  # detection runs amortised
    report["slowest"] = max(bounding, key=lambda k: bounding[k]["ms_per_frame"])
    report["person_frames_per_s_model_alone"] = persons * stages["model"]["frames_per_s"]
    return report


def _stage(seconds_per_call: float, frames_per_call: int) -> dict[str, float]:
    per_frame = seconds_per_call / frames_per_call
    return {
        "ms_per_call": 1e3 * seconds_per_call,
        "frames_per_call": frames_per_call,
        "ms_per_frame": 1e3 * per_frame,
        "frames_per_s": 1.0 / per_frame,
    }


def _median(fn: Any, repeats: int) -> float:
    fn(0)  # warm-up
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i + 1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _decode_video(images: list[np.ndarray], repeats: int) -> tuple[float, int]:
    """Median seconds to decode a whole MP4 of ``images`` repeated to 1 s at 25 fps, and its frame count."""
    count = 25
    with tempfile.TemporaryDirectory(prefix="tdmi-bench-") as folder:
        path = Path(folder) / "clip.mp4"
        height, width = images[0].shape[:2]
        with OverlayWriter(path, width, height, Fraction(1, 25), Fraction(25)) as writer:
            for i in range(count):
                writer.write(images[i % len(images)], i)
        times = []
        for _ in range(max(2, repeats // 2) + 1):
            start = time.perf_counter()
            decoded = sum(1 for _ in iter_frames(path))
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), decoded


def _works(images: list[np.ndarray], length: int, persons: int, frames: int) -> list[FrameWork]:
    """``frames`` key frames from different streams, each a clip of ``length`` distinct images."""
    boxes = np.array(person_boxes(persons), np.float32)

    async def make() -> list[FrameWork]:
        return [
            FrameWork(
                f"s{i}",
                0,
                {k: images[(i + k) % len(images)] for k in range(length)},
                list(range(length)),
                boxes,
            )
            for i in range(frames)
        ]

    return asyncio.run(make())


def _render(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(
        f"{s['model']} ({s['backend']}, {s['precision']}), {s['persons']} persons per {s['frame']} frame, "
        f"batches of {s['max_batch']} clips"
    )
    print()
    print_table(
        ("stage", "ms/call", "frames/call", "ms/frame", "frames/s alone"),
        [
            (k, v["ms_per_call"], v["frames_per_call"], v["ms_per_frame"], v["frames_per_s"])
            for k, v in report["stages"].items()
        ],
    )
    print(f"slowest stage (detection amortised over {s['detect_every']} frames): {report['slowest']}")
