"""``python -m bench job``: a video job end to end through a real server, against a plain script
doing the same steps in sequence, with rendering off and on.

    python -m bench job --video vtest.avi [--frames 200] [--model NAME[=CKPT]] [--detector hog]
                        [--threads 1] [--json]

The server (a subprocess on a loopback port) gets the video by ``POST /v1/pose`` and the time is
taken from the upload to the job's ``done``; its time per stage comes from ``/metrics``. The plain
script runs in this process: PyAV decoding, the detector every ``TDMI_DETECT_EVERY`` frames (the
boxes of the last detection in between), each person's clip through the model one at a time
(``bench.baseline``, the key frame standing in at the ends), the overlay drawn and encoded.
Both use the same model, detector and thread count. The table gives frames/s and the ratio; a
source at 25 fps needs 25 frames/s to be processed as fast as it plays.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from bench.baseline import NaiveBaseline
from bench.hardware import (
    add_run_arguments,
    add_server_model_arguments,
    parse_model_spec,
    server_model,
    set_threads,
)
from bench.report import emit, print_table, report_header
from bench.scrape import scrape
from tdmi.model.presets import build_model
from tdmi.protocol.overlay import draw_poses
from tdmi.service.config import Settings
from tdmi.service.detection.base import make_detector
from tdmi.service.video.decode import DecodedFrame, iter_frames, probe_video
from tdmi.service.video.encode import OverlayWriter
from tests.helpers.server import ServerProcess

__all__ = ["add_arguments", "cut_video", "main", "run_job", "submit_job", "wait_for_job"]

SOURCE_FPS = 25.0  # a common camera rate: the speed a live source would need


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, required=True, help="the video file (e.g. OpenCV's vtest.avi)")
    parser.add_argument("--frames", type=int, default=200, help="frames from the start of the video (0: all)")
    add_server_model_arguments(parser)
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    device = torch.device("cpu")
    spec, detector = server_model(args)
    report = report_header("job", device)
    with tempfile.TemporaryDirectory(prefix="tdmi-bench-job-") as tmp:
        video = cut_video(args.video, args.frames, Path(tmp) / "clip.mp4") if args.frames else args.video
        info = probe_video(video)
        detect_every = Settings.model_fields["detect_every"].default
        report["settings"] = {
            "video": args.video.name,
            "frames": info.num_frames,
            "size": f"{info.width}x{info.height}",
            "model": spec.split("=")[0],
            "detector": detector,
            "detect_every": detect_every,
            "torch_threads": torch.get_num_threads(),
        }
        report["runs"] = []
        for render in (False, True):
            service = _service(video, spec, detector, render, Path(tmp) / f"server-{render}")
            overlay = Path(tmp) / f"plain-{render}.mp4"
            plain = _plain(video, spec, detector, render, detect_every, overlay)
            report["runs"].append(
                {
                    "render": render,
                    "service": service,
                    "plain": plain,
                    "service_over_plain": service["frames_per_s"] / plain["frames_per_s"],
                }
            )
    report["source_fps_needed"] = SOURCE_FPS
    emit(report, args.json, _render)


def cut_video(video: Path, frames: int, out: Path) -> Path:
    """The first ``frames`` frames of ``video`` as an MP4 (lossless enough: high bitrate MPEG-4)."""
    info = probe_video(video)
    with OverlayWriter.for_video(out, info, codec="mpeg4") as writer:
        for frame in _first(iter_frames(video), frames):
            writer.write(frame.image, frame.pts)
    return out


def _first(frames: Iterator[DecodedFrame], count: int) -> Iterator[DecodedFrame]:
    for frame in frames:
        if frame.index >= count:
            return
        yield frame


def _service(video: Path, spec: str, detector: str, render: bool, data: Path) -> dict[str, Any]:
    env = {"TDMI_DETECTOR": detector, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    server = ServerProcess(data, "--model", spec, env=env)
    try:
        server.wait_ready(timeout=600)
        before = scrape(server.base)
        start = time.perf_counter()
        status = wait_for_job(server.base, submit_job(server.base, video, render=render))
        seconds = time.perf_counter() - start
        delta = scrape(server.base).since(before)
    finally:
        server.stop()
    frames = status["progress"]["frames_total"]
    return {"frames_per_s": frames / seconds, "seconds": seconds, "stages": delta.stages()}


def submit_job(base: str, video: Path, *, render: bool = False, boxes: dict[str, Any] | None = None) -> str:
    """``POST /v1/pose`` with the video (and the client's boxes, if any); the job's id."""
    form = {"render": str(render).lower(), **({"boxes": json.dumps(boxes)} if boxes is not None else {})}
    with video.open("rb") as file:
        reply = httpx.post(
            f"{base}/v1/pose", files={"file": (video.name, file, "video/mp4")}, data=form, timeout=600
        )
    reply.raise_for_status()
    return str(reply.json()["job_id"])


def wait_for_job(base: str, job: str) -> dict[str, Any]:
    """The job's status once it is done; raises if it failed or was cancelled."""
    while True:
        status: dict[str, Any] = httpx.get(f"{base}/v1/pose/{job}", timeout=30).json()
        if status["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    if status["status"] != "done":
        raise RuntimeError(f"job {status['status']}: {status.get('error')}")
    return status


def run_job(base: str, video: Path, *, boxes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job's JSON result (``format=json``), from submission to the end."""
    job = submit_job(base, video, boxes=boxes)
    wait_for_job(base, job)
    result: dict[str, Any] = httpx.get(f"{base}/v1/pose/{job}/result", timeout=120).json()
    return result


def _plain(video: Path, spec: str, detector_spec: str, render: bool, every: int, out: Path) -> dict[str, Any]:
    """The same steps one after another, each frame's stages timed."""
    preset, checkpoint = parse_model_spec(spec)
    model = NaiveBaseline(build_model(preset.name, checkpoint), preset, torch.device("cpu"))
    detector = make_detector(detector_spec)
    d = (preset.num_frames - 1) // 2
    info = probe_video(video)
    stages: dict[str, float] = defaultdict(float)
    frames: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    writer = OverlayWriter.for_video(out, info) if render else None
    pts: list[int] = []

    def pose(t: int) -> None:
        clip = [frames[min(max(i, 0), len(frames) - 1)] for i in range(t - d, t + d + 1)]
        began = time.perf_counter()
        persons = model.keypoints(clip, boxes[t]) if len(boxes[t]) else np.zeros((0, 17, 3))
        stages["pose"] += time.perf_counter() - began
        if writer is not None:
            began = time.perf_counter()
            drawn = [{"box": box.tolist(), "keypoints": kps.tolist()} for box, kps in zip(boxes[t], persons)]
            writer.write(draw_poses(frames[t], drawn, preset.layout.skeleton), pts[t])
            stages["encode"] += time.perf_counter() - began

    start = time.perf_counter()
    decoded = iter_frames(video)
    last = np.zeros((0, 4), np.float32)
    while True:
        began = time.perf_counter()
        frame = next(decoded, None)
        stages["decode"] += time.perf_counter() - began
        if frame is None:
            break
        frames.append(frame.image)
        pts.append(frame.pts)
        if detector is not None and frame.index % every == 0:
            began = time.perf_counter()
            last = detector.detect(frame.image).xyxy
            stages["detect"] += time.perf_counter() - began
        boxes.append(last)
        if frame.index >= d:
            pose(frame.index - d)
    for t in range(max(0, len(frames) - d), len(frames)):
        pose(t)
    if writer is not None:
        began = time.perf_counter()
        writer.close()
        stages["encode"] += time.perf_counter() - began
    seconds = time.perf_counter() - start
    return {
        "frames_per_s": len(frames) / seconds,
        "seconds": seconds,
        "stages_s": dict(stages),
        "persons_per_frame": float(np.mean([len(b) for b in boxes])),
    }


def _render(report: dict[str, Any]) -> None:
    settings = report["settings"]
    print(f"{settings['video']}: {settings['frames']} frames {settings['size']}, {settings['model']}, "
          f"detector {settings['detector']} every {settings['detect_every']}")  # fmt: skip
    rows = []
    for run in report["runs"]:
        plain = run["plain"]
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in plain["stages_s"].items())
        name = "render" if run["render"] else "no render"
        rows.append([name, "service", run["service"]["frames_per_s"], ""])
        rows.append(["", "plain script", plain["frames_per_s"], stages])
        rows.append(["", "service / plain", run["service_over_plain"], ""])
    print_table(["run", "what", "frames/s", "plain script's time per stage"], rows)
    print(f"a {report['source_fps_needed']:.0f} fps source needs {report['source_fps_needed']:.0f} frames/s")
    for run in report["runs"]:
        stages = run["service"]["stages"]
        line = ", ".join(f"{k} {v['total_s']:.1f}s" for k, v in stages.items())
        print(f"service stages ({'render' if run['render'] else 'no render'}): {line}")
