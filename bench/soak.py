"""``python -m bench soak``: a real ``tdmi serve`` kept busy for minutes; does it hold its resources?

    python -m bench soak [--seconds 180] [--streams 2] [--jobs 2] [--samples 6]
                         [--device cpu] [--model NAME[=CKPT]] [--json]

The server (a subprocess on a free loopback port, its own data directory) takes, for
``--seconds``: ``--streams`` live WebSocket streams, each opened, fed ``--stream-frames`` JPEG
frames with client boxes, ended and opened again; and ``--jobs`` clients that each upload a short
video job, wait for it, read its result and DELETE it (which removes its files), again and
again. The server process's resident memory (VmRSS), open file descriptors and the size of its
data directory are sampled at the start (after the server is ready and warmed by one stream and
one job), ``--samples`` - 2 times in between, and at the end, after the last stream and job have
finished. The first and the last sample wait until the server has given its free heap back once
more (one ``TDMI_HEAP_TRIM_S`` interval and 5 s), so that they compare what the server holds,
not the allocator's reuse band, which the samples under load show. Flat numbers between the
first and the last sample are the goal; the report prints their differences and the highest
RSS under load. Linux only (the numbers come from ``/proc``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import torch

from bench.hardware import add_run_arguments, default_model_spec, device_from_name, set_threads
from bench.load import StreamLoad, person_boxes, run_streams, synthetic_jpegs
from bench.report import emit, print_table, report_header
from tdmi.service.config import Settings
from tdmi.service.images import decode_image
from tests.helpers.server import ServerProcess

__all__ = ["add_arguments", "main", "measure", "process_usage"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the load runs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny on CPU")
    parser.add_argument("--streams", type=int, default=2, help="live streams open at any time")
    parser.add_argument("--stream-frames", type=int, default=20, help="frames per live stream")
    parser.add_argument("--persons", type=int, default=2, help="client boxes per frame")
    parser.add_argument("--jobs", type=int, default=2, help="clients submitting and deleting jobs")
    parser.add_argument("--job-frames", type=int, default=12, help="frames per job's video")
    parser.add_argument("--samples", type=int, default=6, help="resource samples, first and last included")
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    if args.samples < 3:
        raise SystemExit(f"--samples must be at least 3 (start, under load, end), got {args.samples}")
    if args.seconds <= 0:
        raise SystemExit(f"--seconds must be > 0, got {args.seconds}")
    device = device_from_name(args.device)
    set_threads(args.threads)
    report = measure(
        args.model or default_model_spec(device),
        device,
        seconds=args.seconds,
        streams=args.streams,
        stream_frames=args.stream_frames,
        persons=args.persons,
        jobs=args.jobs,
        job_frames=args.job_frames,
        samples=args.samples,
    )
    emit(report, args.json, _render)


def process_usage(pid: int, data_dir: Path, log: Path | None = None) -> dict[str, float]:
    """Resident memory (MiB), open file descriptors and data-directory size (MiB) of a process;
    ``log``, the server's own log file kept in that directory by the harness, is not counted."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    size = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file() and p != log)
    return {"rss_mib": rss_kib / 1024, "open_fds": fds, "data_dir_mib": size / 2**20}


@dataclass
class _Counts:
    streams: int = 0
    frames_answered: int = 0
    frames_dropped: int = 0
    jobs_done: int = 0
    jobs_deleted: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text[:300])


def measure(
    spec: str,
    device: torch.device,
    *,
    seconds: float,
    streams: int,
    stream_frames: int,
    persons: int,
    jobs: int,
    job_frames: int,
    samples: int,
) -> dict[str, Any]:
    report = report_header("soak", device)
    report["settings"] = {
        "model": spec,
        "seconds": seconds,
        "streams": streams,
        "stream_frames": stream_frames,
        "persons": persons,
        "jobs": jobs,
        "job_frames": job_frames,
        "boxes": "client (no detector)",
    }
    env = {
        "TDMI_DEVICE": str(device),
        "TDMI_STALENESS_MS": "600000",  # a slow shared machine: no drops for staleness
        "TDMI_MAX_FPS": "10000",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # the server's torch threads: as this process's
    }
    jpegs = synthetic_jpegs(stream_frames, 1)
    counts = _Counts()
    with tempfile.TemporaryDirectory(prefix="tdmi-soak-") as tmp:
        data_dir = Path(tmp) / "data"
        video = _job_video(Path(tmp) / "job.mp4", job_frames)
        boxes = json.dumps({str(i): person_boxes(persons) for i in range(job_frames)})
        server = ServerProcess(data_dir, "--model", spec, env=env)
        try:
            server.wait_ready(timeout=600)
            load = StreamLoad(persons, inflight=4)
            warm_up = _Counts()  # the first stream and job pay for imports and caches: not measured
            _one_stream(server, jpegs, load, warm_up)
            _one_job(server, video, boxes, warm_up)
            if warm_up.errors:
                raise SystemExit(f"the server failed its first stream or job: {warm_up.errors[0]}")
            idle_s = Settings().heap_trim_s + 5  # the server's setting: it reads the same environment
            time.sleep(idle_s)
            start = time.monotonic()
            sampled = [_sample(server, data_dir, start, counts)]
            deadline = start + seconds
            threads = [
                threading.Thread(target=_repeat, args=(deadline, _one_stream, server, jpegs, load, counts))
                for _ in range(streams)
            ] + [
                threading.Thread(target=_repeat, args=(deadline, _one_job, server, video, boxes, counts))
                for _ in range(jobs)
            ]
            for thread in threads:
                thread.start()
            for k in range(1, samples - 1):
                time.sleep(max(0.0, start + k * seconds / (samples - 1) - time.monotonic()))
                sampled.append(_sample(server, data_dir, start, counts))
            for thread in threads:
                thread.join()
            under_load = max(sample["rss_mib"] for sample in sampled[1:])
            time.sleep(idle_s)
            sampled.append(_sample(server, data_dir, start, counts))
        finally:
            server.stop()
    first, last = sampled[0], sampled[-1]
    report["samples"] = sampled
    report["change"] = {key: last[key] - first[key] for key in ("rss_mib", "open_fds", "data_dir_mib")}
    report["rss_mib_under_load_max"] = under_load
    report["idle_wait_s"] = idle_s
    report["totals"] = {
        "streams": counts.streams,
        "frames_answered": counts.frames_answered,
        "frames_dropped": counts.frames_dropped,
        "jobs_done": counts.jobs_done,
        "jobs_deleted": counts.jobs_deleted,
    }
    report["errors"] = counts.errors[:10]
    return report


def _job_video(path: Path, frames: int) -> Path:
    """A short H.264 (or MPEG-4) video of the synthetic load frames, 10 fps."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10)
        first = decode_image(synthetic_jpegs(1, 2)[0])
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        stream.time_base = Fraction(1, 10)
        for i, jpeg in enumerate(synthetic_jpegs(frames, 2)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(decode_image(jpeg)), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _repeat(deadline: float, task: Callable[..., None], *args: Any) -> None:
    """Run ``task`` again and again until ``deadline`` (the last run finishes after it)."""
    while time.monotonic() < deadline:
        task(*args)


def _one_stream(server: ServerProcess, jpegs: list[bytes], load: StreamLoad, counts: _Counts) -> None:
    try:
        result = run_streams(server.ws_base, 1, jpegs, load)
    except Exception as exc:  # a soak counts failures and goes on
        counts.error(f"stream: {type(exc).__name__}: {exc}")
        time.sleep(0.5)
        return
    with counts.lock:
        counts.streams += 1
        counts.frames_answered += len(result.latencies)
        counts.frames_dropped += len(result.dropped)
        counts.errors.extend(result.errors[:3])


def _one_job(server: ServerProcess, video: Path, boxes: str, counts: _Counts) -> None:
    """Upload, wait, read the result, delete."""
    try:
        with video.open("rb") as f:
            reply = httpx.post(
                f"{server.base}/v1/pose",
                files={"file": ("soak.mp4", f, "video/mp4")},
                data={"boxes": boxes},
                timeout=60,
            )
        reply.raise_for_status()
        job = reply.json()
        status = httpx.get(job["links"]["self"], timeout=10).json()
        while status["status"] in ("queued", "running"):
            time.sleep(0.2)
            status = httpx.get(job["links"]["self"], timeout=10).json()
        if status["status"] != "done":
            counts.error(f"job {status['status']}: {status.get('error')}")
        else:
            httpx.get(job["links"]["result"], timeout=30).raise_for_status()
            with counts.lock:
                counts.jobs_done += 1
        httpx.delete(job["links"]["self"], timeout=10).raise_for_status()
        with counts.lock:
            counts.jobs_deleted += 1
    except Exception as exc:
        counts.error(f"job: {type(exc).__name__}: {exc}")
        time.sleep(0.5)


def _sample(server: ServerProcess, data_dir: Path, start: float, counts: _Counts) -> dict[str, float]:
    usage = process_usage(server.proc.pid, data_dir, server.log_path)
    with counts.lock:
        done = {"streams": counts.streams, "jobs_done": counts.jobs_done}
    return {"seconds": time.monotonic() - start, **usage, **done}


def _render(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(
        f"{s['model']}: {s['seconds']:g} s of {s['streams']} live streams x {s['stream_frames']} frames "
        f"and {s['jobs']} job clients x {s['job_frames']} frames, {s['persons']} persons per frame"
    )
    print()
    print_table(
        ("s", "RSS MiB", "open fds", "data dir MiB", "streams", "jobs"),
        [
            (r["seconds"], r["rss_mib"], r["open_fds"], r["data_dir_mib"], r["streams"], r["jobs_done"])
            for r in report["samples"]
        ],
    )
    change, totals = report["change"], report["totals"]
    print()
    print(
        f"first -> last sample: RSS {change['rss_mib']:+.1f} MiB, open fds {change['open_fds']:+d}, "
        f"data dir {change['data_dir_mib']:+.2f} MiB (both after {report['idle_wait_s']:g} s idle); "
        f"highest RSS under load {report['rss_mib_under_load_max']:.0f} MiB"
    )
    print(
        f"served: {totals['streams']} streams ({totals['frames_answered']} frames answered, "
        f"{totals['frames_dropped']} dropped), {totals['jobs_done']} jobs done, "
        f"{totals['jobs_deleted']} deleted"
    )
    for error in report["errors"]:
        print("error:", error)
