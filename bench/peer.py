"""``python -m bench peer``: our service next to the same model behind LitServe, and the naive
baseline, fed the same frames, boxes and load in one run.

    python -m bench peer [--streams 4] [--persons 3] [--frames 30] [--max-batch 16]
                         [--max-delay-ms 5] [--rounds 1] [--threads 1] [--json]

Both servers run on this machine's CPU as subprocesses on loopback ports, one at a time. Each
gets N streams of 640x480 JPEG frames with K client boxes (no detector):
1. Saturation: closed loop, each stream keeping ``--inflight`` frames unanswered; person-frames/s.
2. Half load: each stream sends at half its saturation rate (per server: each is loaded at half
   of what it can do); p50 and p95 latency from frame sent to keypoints received.

Both answer at once (lookahead 0: a clip is t-d..t, the key frame standing in for the future, so
neither waits for frames that have not arrived). LitServe's dynamic batching counts requests
(frames), ours counts clips (persons): its max batch is ours divided by K, its timeout is ours.
Ours speaks WebSocket (frames as binary messages), the peer HTTP (a JSON POST per frame with the
JPEG in base64): each as it is meant to be used. With ``--rounds`` > 1 the two alternate and the
medians are reported.
"""

from __future__ import annotations

import argparse
import base64
import math
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from bench.baseline import NaiveBaseline
from bench.hardware import add_run_arguments, default_model_spec, parse_model_spec, set_threads
from bench.load import LoadResult, StreamLoad, person_boxes, run_each, run_streams, synthetic_jpegs
from bench.report import emit, print_table, report_header
from bench.timing import percentile
from tdmi.model.presets import build_model
from tdmi.service.images import decode_image
from tests.helpers.server import ServerProcess, free_port

__all__ = ["add_arguments", "main", "run_http_streams"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny")
    parser.add_argument("--streams", type=int, default=4, help="concurrent live streams")
    parser.add_argument("--persons", type=int, default=3, help="client boxes per frame")
    parser.add_argument("--frames", type=int, default=30, help="frames per stream at saturation")
    parser.add_argument("--inflight", type=int, default=4, help="unanswered frames per stream at saturation")
    parser.add_argument("--max-batch", type=int, default=16, help="our TDMI_MAX_BATCH (clips)")
    parser.add_argument("--max-delay-ms", type=float, default=5.0, help="our TDMI_MAX_DELAY_MS")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="duration of the half-load phase")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (medians reported)")
    parser.add_argument("--baseline-frames", type=int, default=6, help="frames the naive baseline serves")
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    device = torch.device("cpu")
    spec = args.model or default_model_spec(device)
    threads = torch.get_num_threads()
    report = report_header("peer", device)
    report["settings"] = {
        "model": spec.split("=")[0],
        "streams": args.streams,
        "persons": args.persons,
        "frames_per_stream": args.frames,
        "inflight": args.inflight,
        "max_batch_clips": args.max_batch,
        "peer_max_batch_frames": max(1, args.max_batch // args.persons),
        "max_delay_ms": args.max_delay_ms,
        "lookahead": 0,
        "torch_threads": threads,
    }
    servers = {"ours": _ours, "litserve": _litserve}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    with tempfile.TemporaryDirectory(prefix="tdmi-peer-") as data:
        for _ in range(args.rounds):
            for name, start in servers.items():
                with start(spec, args, threads, Path(data)) as load:
                    rounds[name].append(_measure(load, args))
    report["servers"] = {name: _median_of(runs) for name, runs in rounds.items()}
    report["baseline"] = {"person_frames_per_s": _baseline(spec, args)}
    ours, peer = report["servers"]["ours"], report["servers"]["litserve"]
    report["ours_over_litserve"] = _ratio(ours["person_frames_per_s"], peer["person_frames_per_s"])
    report["ours_over_baseline"] = _ratio(
        ours["person_frames_per_s"], report["baseline"]["person_frames_per_s"]
    )
    emit(report, args.json, _render)


class _Load:
    """A running server and how to load it: ``run(jpegs, load)`` returns a LoadResult."""

    def __init__(self, run: Any, stop: Any):
        self.run, self._stop = run, stop

    def __enter__(self) -> _Load:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


def _ours(spec: str, args: argparse.Namespace, threads: int, data: Path) -> _Load:
    env = {
        "TDMI_MAX_BATCH": str(args.max_batch),
        "TDMI_MAX_DELAY_MS": str(args.max_delay_ms),
        "TDMI_MAX_STREAMS": str(max(32, args.streams)),
        "TDMI_STALENESS_MS": "600000",  # measure queueing, do not hide it behind drops
        "TDMI_MAX_FPS": "10000",
        "TDMI_QUEUE_FRAMES": str(max(64, 2 * args.streams * args.inflight)),
        "OMP_NUM_THREADS": str(threads),
    }
    server = ServerProcess(data / "ours", "--model", spec, env=env)
    try:
        server.wait_ready(timeout=600)
    except BaseException:
        server.stop()
        raise
    return _Load(lambda jpegs, load: run_streams(server.ws_base, args.streams, jpegs, load), server.stop)


def _litserve(spec: str, args: argparse.Namespace, threads: int, data: Path) -> _Load:
    port = free_port()
    log = (data / f"litserve-{port}.log").open("wb")
    command = [
        *(sys.executable, "-m", "bench.peer_api", "--port", str(port), "--model", spec),
        *("--max-batch", str(max(1, args.max_batch // args.persons))),
        *("--batch-timeout", str(args.max_delay_ms / 1e3), "--threads", str(threads)),
    ]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, data / f"litserve-{port}.log")
    except BaseException:
        stop()
        raise
    return _Load(lambda jpegs, load: run_http_streams(f"{base}/predict", args.streams, jpegs, load), stop)


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"LitServe exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"LitServe not healthy after {timeout} s")


def run_http_streams(url: str, streams: int, jpegs: list[bytes], load: StreamLoad) -> LoadResult:
    """``streams`` concurrent streams POSTing ``jpegs`` to ``url`` one frame per request, closed
    or open loop as ``load`` says (the same schedule as ``bench.load.run_streams``)."""
    encoded = [base64.b64encode(jpeg).decode() for jpeg in jpegs]
    return run_each(streams, lambda k, result, phase: _http_stream(url, k, encoded, load, result, phase))


def _http_stream(
    url: str, stream: int, jpegs: list[str], load: StreamLoad, result: LoadResult, phase: float
) -> None:
    boxes = person_boxes(load.persons)
    window = threading.Semaphore(load.inflight)
    workers = load.inflight if load.fps <= 0 else len(jpegs)
    with httpx.Client(timeout=300) as client, ThreadPoolExecutor(workers) as pool:

        def post(i: int) -> None:
            sent = time.perf_counter()
            try:
                reply = client.post(
                    url, json={"stream": stream, "frame": i, "jpeg": jpegs[i], "boxes": boxes}
                )
                with result.lock:
                    if reply.status_code == 200:
                        result.latencies.append(time.perf_counter() - sent)
                    else:
                        result.errors.append(f"{reply.status_code} {reply.text[:200]}")
            except httpx.HTTPError as exc:
                with result.lock:
                    result.errors.append(repr(exc))
            finally:
                window.release()

        start = time.perf_counter() + (phase / load.fps if load.fps > 0 else 0.0)
        for i in range(len(jpegs)):
            if load.fps > 0:
                time.sleep(max(0.0, start + i / load.fps - time.perf_counter()))
            else:
                window.acquire()
            pool.submit(post, i)


def _measure(load: _Load, args: argparse.Namespace) -> dict[str, Any]:
    """Saturation, then half of it, on one running server."""
    saturation = load.run(synthetic_jpegs(args.frames, 1), StreamLoad(args.persons, 0.0, args.inflight, 0))
    frames_per_s = len(saturation.latencies) / saturation.seconds
    per_stream = 0.5 * frames_per_s / args.streams
    count = max(3, math.ceil(per_stream * args.load_seconds))
    half = load.run(synthetic_jpegs(count, 2), StreamLoad(args.persons, per_stream, count, 0))
    return {
        "person_frames_per_s": frames_per_s * args.persons,
        "saturation_errors": saturation.errors[:3],
        "half_load_fps_per_stream": per_stream,
        "half_load_p50_ms": 1e3 * percentile(half.latencies, 50) if half.latencies else math.nan,
        "half_load_p95_ms": 1e3 * percentile(half.latencies, 95) if half.latencies else math.nan,
        "half_load_errors": half.errors[:3],
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["person_frames_per_s", "half_load_fps_per_stream", "half_load_p50_ms", "half_load_p95_ms"]
    merged: dict[str, Any] = {key: float(np.median([run[key] for run in runs])) for key in keys}
    merged["errors"] = [e for run in runs for e in run["saturation_errors"] + run["half_load_errors"]][:5]
    merged["rounds"] = len(runs)
    return merged


def _baseline(spec: str, args: argparse.Namespace) -> float:
    preset, checkpoint = parse_model_spec(spec)
    baseline = NaiveBaseline(build_model(preset.name, checkpoint), preset, torch.device("cpu"))
    frames = [decode_image(jpeg) for jpeg in synthetic_jpegs(args.baseline_frames + preset.num_frames, 3)]
    d = (preset.num_frames - 1) // 2
    clips = [[*frames[t - d : t + 1], *[frames[t]] * d] for t in range(d, d + args.baseline_frames)]
    return baseline.person_frames_per_second(clips, np.array(person_boxes(args.persons), np.float32))


def _render(report: dict[str, Any]) -> None:
    rows = [
        [
            name,
            server["person_frames_per_s"],
            server["half_load_p50_ms"],
            server["half_load_p95_ms"],
            len(server["errors"]),
        ]
        for name, server in report["servers"].items()
    ]
    rows.append(["naive baseline", report["baseline"]["person_frames_per_s"], "", "", ""])
    print_table(["server", "person-frames/s (saturation)", "p50 ms (half load)", "p95 ms", "errors"], rows)
    print(
        f"ours / LitServe: {report['ours_over_litserve']:.2f}x; "
        f"ours / naive baseline: {report['ours_over_baseline']:.2f}x"
    )
