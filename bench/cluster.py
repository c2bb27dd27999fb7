"""``python -m bench cluster``: the Redis scale-out on the CPU, in one run: video-job throughput
with one worker against two (the scaling ratio), and the latency a live stream adds by going
through Redis instead of staying in one embedded process.

    python -m bench cluster [--jobs 4] [--frames 32] [--rounds 3] [--persons 2] [--threads 1]
                            [--running-jobs 1] [--stream-frames 120] [--fps 5] [--stream-persons 1]
                            [--lookahead 0] [--json]

Set-up, all started side by side and kept up for the whole run: a real redis-server; cluster A,
an API node (``tdmi serve --redis``) and one worker (``tdmi worker``) on Redis database 1;
cluster B, an API node and two workers on database 2 (a fresh database: no state shared with A);
and an embedded ``tdmi serve`` without Redis. The demo model (``tdmi-tiny``) serves everywhere.

1. Jobs: ``--jobs`` identical synthetic videos (``tdmi.model.data.synth``, 320x240, ``--frames``
   frames, ``--persons`` persons, their ground-truth boxes sent as client boxes so no detector
   runs) are submitted at once; the wall clock runs from the first upload until the last job is
   seen done. One warm-up job per worker first, not counted. Scaling = jobs/s of B over A.
2. Live latency: one stream of 640x480 JPEG frames (``bench.load``, ``--stream-persons`` client
   boxes) sent at ``--fps`` on a fixed schedule, after a short uncounted warm-up stream; latency
   from frame sent to result received, measured the same way in this client for cluster A and
   for the embedded server. Extra latency = cluster minus embedded, for the median and for p95.

Both are measured in ``--rounds`` alternating rounds (A jobs, B jobs, embedded stream, cluster
stream; the order reversed every other round) and pooled, so that a machine shared with other
work slows both sides of each comparison alike. ``--stream-frames`` is the total per mode.

Every server process runs with ``--threads`` torch threads (OMP_NUM_THREADS), the same in every
case, so that two workers on a small CPU can each have a core of their own; on a GPU host each
worker would own a GPU instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import torch

from bench.hardware import cpu_model
from bench.load import StreamLoad, run_streams, synthetic_jpegs
from bench.report import emit, print_table, report_header
from bench.timing import percentile
from tdmi.model.data.posetrack import load_sequence
from tdmi.model.data.synth import SynthOptions, generate_dataset
from tdmi.service.cluster import keys
from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess

__all__ = ["add_arguments", "main", "measure"]

POLL_S = 0.05
STALL_S = 120  # a job whose state and frame count stay put this long is stuck: fail, do not wait
WARMUP_STREAM_FRAMES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs", type=_at_least(1), default=4, help="video jobs submitted per round and cluster"
    )
    parser.add_argument(
        "--frames", type=_at_least(1), default=32, help="frames per job video (320x240, 25 fps)"
    )
    parser.add_argument("--rounds", type=_at_least(1), default=3, help="alternating measurement rounds")
    parser.add_argument("--persons", type=_at_least(1), default=2, help="persons in each job video")
    parser.add_argument(
        "--threads", type=_at_least(1), default=1, help="torch threads of every server process"
    )
    parser.add_argument(
        "--running-jobs",
        type=_at_least(1),
        default=1,
        help="TDMI_MAX_RUNNING_JOBS: jobs a worker runs at once",
    )
    parser.add_argument(
        "--stream-frames", type=_at_least(1), default=120, help="live frames per mode, over all rounds"
    )
    parser.add_argument("--fps", type=_positive_float, default=5.0, help="rate the live stream sends at")
    parser.add_argument("--stream-persons", type=_at_least(1), default=1, help="client boxes per live frame")
    parser.add_argument(
        "--lookahead", type=_at_least(0), default=0, help="live lookahead (future frames waited for)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def main(args: argparse.Namespace) -> None:
    emit(measure(args), args.json, _render)


@dataclass(frozen=True)
class JobVideo:
    """One synthetic MP4 and its ground-truth boxes, uploaded as every job of a measurement."""

    data: bytes
    boxes: str  # the job API's JSON: frame index -> [[x1, y1, x2, y2], ...]
    frames: int
    person_frames: int


def measure(args: argparse.Namespace) -> dict[str, Any]:
    report = report_header("cluster", torch.device("cpu"))
    report["device"] = (
        f"{cpu_model()} ({os.cpu_count()} cores; torch uses {args.threads} thread(s) in every server process)"
    )
    report["load_average_at_start"] = list(os.getloadavg())
    env = {
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TDMI_DETECTOR": "none",  # client boxes everywhere
        "TDMI_MAX_RUNNING_JOBS": str(args.running_jobs),
        "TDMI_STALENESS_MS": "600000",  # measure latency, do not hide it behind drops
    }
    per_round = math.ceil(args.stream_frames / args.rounds)
    stream_jpegs = synthetic_jpegs(per_round, 1)
    load = StreamLoad(args.stream_persons, args.fps, inflight=per_round, lookahead=args.lookahead)
    with tempfile.TemporaryDirectory(prefix="tdmi-bench-cluster-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        video = _job_video(root / "synth", args.frames, args.persons)
        report["settings"] = {
            "model": "tdmi-tiny (demo)",
            "torch_threads_per_process": args.threads,
            "max_running_jobs_per_worker": args.running_jobs,
            "rounds": args.rounds,
            "jobs_per_round": args.jobs,
            "frames_per_job": video.frames,
            "person_frames_per_job": video.person_frames,
            "job_video": "320x240 synthetic MP4, ground-truth boxes as client boxes",
            "stream_frames_per_mode": per_round * args.rounds,
            "stream_fps": args.fps,
            "stream_persons": args.stream_persons,
            "lookahead": args.lookahead,
        }
        server = RedisServer(root / "redis")
        server.start()
        stack.callback(server.stop)
        one = stack.enter_context(_Cluster(root / "one", server.url(1), env, workers=1))
        two = stack.enter_context(_Cluster(root / "two", server.url(2), env, workers=2))
        embedded = ServerProcess(root / "embedded", env=env)
        stack.callback(embedded.stop)
        for process in (*one.processes, *two.processes, embedded):
            process.wait_ready(timeout=600)
        one.wait_listed()
        two.wait_listed()
        for cluster in (one, two):  # warm-up: one job per worker, not counted
            _run_jobs(cluster.api, video, len(cluster.workers))
        for mode in (embedded, one.api):
            run_streams(mode.ws_base, 1, stream_jpegs[:WARMUP_STREAM_FRAMES], load)
        jobs: dict[int, list[tuple[float, list[str]]]] = {1: [], 2: []}
        latencies: dict[str, list[float]] = {"embedded": [], "cluster": []}
        drops = dict.fromkeys(latencies, 0)
        for r in range(args.rounds):
            for cluster in (one, two)[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                job_ids = _run_jobs(cluster.api, video, args.jobs)
                jobs[len(cluster.workers)].append((time.perf_counter() - start, job_ids))
            for name, mode in (("embedded", embedded), ("cluster", one.api))[:: 1 if r % 2 == 0 else -1]:
                result = run_streams(mode.ws_base, 1, stream_jpegs, load)
                if result.errors or not result.latencies:
                    raise RuntimeError(f"live stream ({name}) failed: {result.errors[:3]}")
                latencies[name] += result.latencies
                drops[name] += len(result.dropped)
        report["one_worker"] = _throughput(one, video, jobs[1])
        report["two_workers"] = _throughput(two, video, jobs[2])
        report["stream_embedded"] = _latency(latencies["embedded"], drops["embedded"])
        report["stream_cluster"] = _latency(latencies["cluster"], drops["cluster"])
    report["scaling"] = report["two_workers"]["jobs_per_s"] / report["one_worker"]["jobs_per_s"]
    cluster_ms, local_ms = report["stream_cluster"]["latency_ms"], report["stream_embedded"]["latency_ms"]
    report["extra_latency_ms"] = {q: cluster_ms[q] - local_ms[q] for q in ("p50", "p95")}
    report["load_average_at_end"] = list(os.getloadavg())
    return report


def _job_video(root: Path, frames: int, persons: int) -> JobVideo:
    options = SynthOptions(
        out=root, videos=1, split="val", frames=frames, seed=5, min_persons=persons, max_persons=persons
    )
    generate_dataset(options)
    (annotation,) = (root / "annotations" / "val").glob("*.json")
    limit = np.array([options.width, options.height] * 2, np.float32)
    boxes: dict[str, list[list[float]]] = {}
    for index, frame in enumerate(load_sequence(annotation).images):
        clipped = [np.clip(p.box, 0, limit) for p in frame.people if p.box is not None]
        boxes[str(index)] = [b.tolist() for b in clipped if b[2] > b[0] and b[3] > b[1]]
    data = (root / "videos" / "val" / f"{annotation.stem}.mp4").read_bytes()
    return JobVideo(data, json.dumps(boxes), frames, sum(len(b) for b in boxes.values()))


class _Cluster:
    """An API node and ``workers`` workers on one Redis database and one shared data directory;
    started on creation, stopped on leaving the ``with`` block."""

    def __init__(self, root: Path, redis_url: str, env: dict[str, str], workers: int):
        self.redis_url = redis_url
        node_env = {**env, "TDMI_REDIS_URL": redis_url}
        self.api = ServerProcess(root, env=node_env)
        self.workers = {
            f"w{i + 1}": ServerProcess(root, "--worker-id", f"w{i + 1}", env=node_env, command="worker")
            for i in range(workers)
        }
        self.processes = (self.api, *self.workers.values())

    def __enter__(self) -> _Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        for process in reversed(self.processes):
            process.stop()

    def wait_listed(self, timeout: float = 60) -> None:
        """Until the API node lists exactly this cluster's workers (live streams need them)."""
        deadline = time.monotonic() + timeout
        listed: set[str] = set()
        while time.monotonic() < deadline:
            reply = httpx.get(f"{self.api.base}/v1/workers", timeout=5).json()
            listed = {w["worker_id"] for w in reply["workers"]}
            if listed == set(self.workers):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"workers {sorted(self.workers)} not listed by the API node; last: {sorted(listed)}"
        )

    def ran_on(self, job_ids: list[str]) -> dict[str, int]:
        """Jobs per worker, as the cluster recorded them."""
        client = redis.Redis.from_url(self.redis_url)
        counts = dict.fromkeys(self.workers, 0)
        for job_id in job_ids:
            counts[client.hget(keys.job(job_id), "worker").decode()] += 1
        client.close()
        return counts


def _throughput(cluster: _Cluster, video: JobVideo, rounds: list[tuple[float, list[str]]]) -> dict[str, Any]:
    seconds = sum(s for s, _ in rounds)
    jobs = sum(len(ids) for _, ids in rounds)
    return {
        "workers": len(cluster.workers),
        "jobs": jobs,
        "seconds": seconds,
        "seconds_per_round": [s for s, _ in rounds],
        "jobs_per_s": jobs / seconds,
        "frames_per_s": jobs * video.frames / seconds,
        "person_frames_per_s": jobs * video.person_frames / seconds,
        "jobs_per_worker": cluster.ran_on([i for _, ids in rounds for i in ids]),
    }


def _run_jobs(api: ServerProcess, video: JobVideo, count: int) -> list[str]:
    """Submit ``count`` jobs of ``video``, then wait until every one is done; their ids."""
    with httpx.Client(base_url=api.base, timeout=60) as client:
        job_ids = []
        for _ in range(count):
            reply = client.post(
                "/v1/pose", files={"file": ("clip.mp4", video.data, "video/mp4")}, data={"boxes": video.boxes}
            )
            if reply.status_code != 202:
                raise RuntimeError(f"job not accepted: {reply.status_code} {reply.text}")
            job_ids.append(reply.json()["job_id"])
        for job_id in job_ids:  # one request per poll: the earliest job not yet seen done
            seen: tuple[str, int] | None = None
            since = time.monotonic()
            while (status := client.get(f"/v1/pose/{job_id}").json())["status"] in ("queued", "running"):
                if (now := (status["status"], status["progress"]["frames_done"])) != seen:
                    seen, since = now, time.monotonic()
                elif time.monotonic() - since > STALL_S:
                    raise RuntimeError(f"job {job_id} made no progress for {STALL_S} s: {status}")
                time.sleep(POLL_S)
            if status["status"] != "done":
                raise RuntimeError(f"job {job_id} ended {status['status']}: {status.get('error')}")
    return job_ids


def _latency(latencies: list[float], dropped: int) -> dict[str, Any]:
    return {
        "frames_answered": len(latencies),
        "frames_dropped": dropped,
        "latency_ms": {f"p{q}": 1e3 * percentile(latencies, q) for q in (50, 95, 99)},
    }


def _render(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(
        f"{s['model']}, {s['torch_threads_per_process']} torch thread(s) per process, "
        f"{s['max_running_jobs_per_worker']} running job(s) per worker; load average (1 min) "
        f"{report['load_average_at_start'][0]:.2f} at start, {report['load_average_at_end'][0]:.2f} at end"
    )
    print()
    print(
        f"jobs: {s['rounds']} rounds x {s['jobs_per_round']} jobs x {s['frames_per_job']} frames "
        f"({s['person_frames_per_job']} person-frames) each"
    )
    print_table(
        ("workers", "jobs", "seconds", "s per round", "jobs/s", "frames/s", "person-frames/s", "per worker"),
        [
            (r["workers"], r["jobs"], r["seconds"], " ".join(f"{x:.1f}" for x in r["seconds_per_round"]),
             r["jobs_per_s"], r["frames_per_s"], r["person_frames_per_s"],
             " ".join(f"{k}:{v}" for k, v in r["jobs_per_worker"].items()))
            for r in (report["one_worker"], report["two_workers"])
        ],
    )  # fmt: skip
    print(f"scaling (jobs/s two workers / one worker): {report['scaling']:.2f}")
    print()
    print(
        f"live stream: {s['stream_frames_per_mode']} frames per mode at {s['stream_fps']:g} fps, "
        f"{s['stream_persons']} person(s), lookahead {s['lookahead']}, rounds alternating"
    )
    rows = [("embedded", report["stream_embedded"]), ("cluster", report["stream_cluster"])]
    print_table(
        ("mode", "answered", "dropped", "p50 ms", "p95 ms", "p99 ms"),
        [
            (name, r["frames_answered"], r["frames_dropped"], r["latency_ms"]["p50"],
             r["latency_ms"]["p95"], r["latency_ms"]["p99"])
            for name, r in rows
        ],
    )  # fmt: skip
    extra = report["extra_latency_ms"]
    print(f"extra latency through Redis: p50 {extra['p50']:+.1f} ms, p95 {extra['p95']:+.1f} ms")
