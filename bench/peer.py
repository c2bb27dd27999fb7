"""``python -m bench peer``: our service next to the same model behind LitServe, and the naive
baseline, fed the same frames, boxes and load in one run.

    python -m bench peer [--backend torch|onnxruntime] [--streams 4] [--persons 3] [--frames 30]
                         [--max-batch 16] [--max-delay-ms 5] [--rounds 1] [--threads 1] [--json]

Both servers run on this machine's CPU on the runtime ``--backend`` names (LitServe's API uses
our backend classes), as subprocesses on loopback ports, one at a time, each in a session of its
own that is ended whole (workers included) after each phase (``bench.processes``). Each gets N
streams of 640x480 JPEG frames with K client boxes (no detector):
1. Saturation: closed loop, each stream keeping ``--inflight`` frames unanswered; person-frames/s,
   and the CPU milliseconds per person-frame of every process of the server's session (for ours
   also per thread group and per stage of the live path: where the CPU went, ``bench.cpu``), and
   the load generator's (this process, on the same cores: WebSocket frames for ours, base64 JSON
   POSTs for LitServe's).
2. Half load: each stream sends at half its saturation rate (per server: each is loaded at half
   of what it can do); p50 and p95 latency from frame sent to keypoints received.
3. Same load: both at half of the slower one's saturation; p50 and p95.

Both answer at once (lookahead 0: a clip is t-d..t, the key frame standing in for the future, so
neither waits for frames that have not arrived). LitServe's dynamic batching counts requests
(frames), ours counts clips (persons): its max batch is ours divided by K, its timeout is ours.
Ours speaks WebSocket (frames as binary messages), the peer HTTP (a JSON POST per frame with the
JPEG in base64): each as it is meant to be used. A round runs one server's phases 1-2, the
other's 1-3, then the first's 3 (started again); with ``--rounds`` > 1 the order alternates
(ours first, then LitServe first, ...) and the medians are reported (each round's numbers under
``rounds`` in ``--json``)."""

from __future__ import annotations

import argparse
import base64
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from bench.baseline import NaiveBaseline
from bench.cpu import cpu_between, print_cpu_table, print_stage_table, snapshot, stage_cpu_ms
from bench.hardware import add_run_arguments, default_model_spec, parse_model_spec, set_threads
from bench.load import LoadResult, StreamLoad, person_boxes, run_each, run_streams, synthetic_jpegs
from bench.processes import SessionProcess
from bench.report import emit, print_table, report_header
from bench.scrape import Scrape, scrape
from bench.timing import percentile
from tdmi.model.presets import build_model
from tdmi.service.images import decode_image
from tests.helpers.server import free_port

__all__ = ["add_arguments", "main", "run_http_streams"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny")
    parser.add_argument(
        "--backend", default="torch", choices=["torch", "onnxruntime"], help="the runtime of both servers"
    )
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
        "backend": args.backend,
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
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in _SERVERS}
    sessions: list[SessionProcess] = []
    with tempfile.TemporaryDirectory(prefix="tdmi-peer-") as data:
        start = _Start(spec, args, threads, Path(data), sessions)
        for r in range(args.rounds):
            order = list(_SERVERS) if r % 2 == 0 else list(reversed(_SERVERS))
            for name, run in _round(order, start).items():
                rounds[name].append(run)
    # every server's session and the processes it held when it was ended: none of them is left
    report["sessions"] = [{"session": p.session, "processes": p.ended} for p in sessions]
    report["servers"] = {name: _median_of(runs) for name, runs in rounds.items()}
    report["rounds"] = rounds
    report["baseline"] = {"person_frames_per_s": _baseline(spec, args)}
    ours, peer = report["servers"]["ours"], report["servers"]["litserve"]
    report["ours_over_litserve"] = _ratio(ours["person_frames_per_s"], peer["person_frames_per_s"])
    report["ours_over_baseline"] = _ratio(
        ours["person_frames_per_s"], report["baseline"]["person_frames_per_s"]
    )
    emit(report, args.json, _render)


class _Load:
    """A running server (a session of its own) and how to load it: ``run(jpegs, load)``.
    ``metrics``: ours' base URL, whose CPU is accounted per thread group and per stage too (its
    work is in the process started, its stage counters in its ``/metrics``); None for LitServe's,
    whose work is in the processes that one starts, so only its session's total is."""

    def __init__(
        self,
        process: SessionProcess,
        run: Callable[[list[bytes], StreamLoad], LoadResult],
        metrics: str | None,
    ):
        self.process, self.run, self.metrics = process, run, metrics

    def __enter__(self) -> _Load:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


@dataclass
class _Start:
    """Starts either server, ready to be loaded, and records its session."""

    spec: str
    args: argparse.Namespace
    threads: int
    data: Path
    sessions: list[SessionProcess]

    def __call__(self, name: str) -> _Load:
        port = free_port()
        command, env, health = _SERVERS[name](self, port)
        process = SessionProcess(command, self.data / f"{name}-{port}.log", env)
        self.sessions.append(process)
        try:
            process.wait_healthy(f"http://127.0.0.1:{port}{health}")
        except BaseException:
            process.stop()
            raise
        streams = self.args.streams
        if name == "ours":
            ws = f"ws://127.0.0.1:{port}"
            base = f"http://127.0.0.1:{port}"
            return _Load(process, lambda jpegs, load: run_streams(ws, streams, jpegs, load), base)
        url = f"http://127.0.0.1:{port}/predict"
        return _Load(process, lambda jpegs, load: run_http_streams(url, streams, jpegs, load), None)


def _ours(start: _Start, port: int) -> tuple[list[str], dict[str, str], str]:
    args = start.args
    command = [
        *(sys.executable, "-m", "tdmi.service.cli", "serve", "--port", str(port)),
        *("--data-dir", str(start.data / "ours"), "--model", start.spec, "--backend", args.backend),
    ]
    env = {
        "TDMI_DEVICE": "cpu",
        "TDMI_MAX_BATCH": str(args.max_batch),
        "TDMI_MAX_DELAY_MS": str(args.max_delay_ms),
        "TDMI_MAX_STREAMS": str(max(32, args.streams)),
        "TDMI_STALENESS_MS": "600000",  # measure queueing, do not hide it behind drops
        "TDMI_MAX_FPS": "10000",
        "TDMI_QUEUE_FRAMES": str(max(64, 2 * args.streams * args.inflight)),
        "OMP_NUM_THREADS": str(start.threads),
    }
    return command, env, "/readyz"


def _litserve(start: _Start, port: int) -> tuple[list[str], dict[str, str], str]:
    args = start.args
    command = [
        *(sys.executable, "-m", "bench.peer_api", "--port", str(port), "--model", start.spec),
        *("--max-batch", str(max(1, args.max_batch // args.persons))),
        *("--batch-timeout", str(args.max_delay_ms / 1e3), "--threads", str(start.threads)),
        *("--backend", args.backend, "--cache-dir", str(start.data / "litserve-onnx")),
    ]
    (start.data / "litserve-onnx").mkdir(exist_ok=True)
    return command, {"OMP_NUM_THREADS": str(start.threads)}, "/health"


_SERVERS = {"ours": _ours, "litserve": _litserve}


def _round(order: list[str], start: _Start) -> dict[str, dict[str, Any]]:
    """One round: each server's saturation and half of it, then both at the same offered load
    (half of the slower one's saturation). The second server stays up for its same-load phase;
    the first is started again for its own."""
    first, second = order
    runs = {}
    with start(first) as load:
        runs[first] = _own_loads(load, start.args)
    with start(second) as load:
        runs[second] = _own_loads(load, start.args)
        per_stream = 0.5 * min(run["frames_per_s"] for run in runs.values()) / start.args.streams
        runs[second].update(_same_load(load, start.args, per_stream))
    with start(first) as load:
        runs[first].update(_same_load(load, start.args, per_stream))
    return runs


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


def _own_loads(load: _Load, args: argparse.Namespace) -> dict[str, Any]:
    """Saturation (with the CPU it took), then half of it, on one running server."""
    pid = load.process.proc.pid
    counted = scrape(load.metrics) if load.metrics is not None else None
    before = snapshot(pid)  # after the scrape: its CPU is not the phase's
    saturation = load.run(synthetic_jpegs(args.frames, 1), StreamLoad(args.persons, 0.0, args.inflight, 0))
    cpu = cpu_between(before, snapshot(pid))
    person_frames = len(saturation.latencies) * args.persons
    per_frame = cpu.per_unit_ms(person_frames)
    if load.metrics is None or counted is None:
        per_frame = {"session_ms": per_frame["session_ms"]}
    else:
        stage_cpu = scrape(load.metrics).since(counted).stage_cpu
        per_frame["stages"] = stage_cpu_ms(cpu, stage_cpu, person_frames)
    frames_per_s = len(saturation.latencies) / saturation.seconds
    per_stream = 0.5 * frames_per_s / args.streams
    half = _open_loop(load, args, per_stream)
    return {
        "frames_per_s": frames_per_s,
        "person_frames_per_s": frames_per_s * args.persons,
        "cpu": per_frame,
        "client_cpu_ms_per_person_frame": saturation.client_cpu_ms(person_frames),
        "saturation_errors": saturation.errors[:3],
        "half_load_fps_per_stream": per_stream,
        "half_load_p50_ms": _ms(half, 50),
        "half_load_p95_ms": _ms(half, 95),
        "half_load_errors": half.errors[:3],
    }


def _same_load(load: _Load, args: argparse.Namespace, per_stream: float) -> dict[str, Any]:
    """Latency at the offered load both servers get; for ours also where a frame's time went."""
    counted = scrape(load.metrics) if load.metrics is not None else None
    same = _open_loop(load, args, per_stream)
    out: dict[str, Any] = {
        "same_load_fps_per_stream": per_stream,
        "same_load_p50_ms": _ms(same, 50),
        "same_load_p95_ms": _ms(same, 95),
        "same_load_errors": same.errors[:3],
    }
    if load.metrics is not None and counted is not None:
        out["same_load_stages_ms"] = _stage_wall_ms(scrape(load.metrics).since(counted))
    return out


def _stage_wall_ms(delta: Scrape) -> dict[str, float]:
    """Mean wall milliseconds of each stage's call (a frame's, or a batch's for crop, model and
    post), the batcher's queue wait among them, and the mean batch in clips."""
    out = {stage: counts["ms_per_call"] for stage, counts in delta.stages().items()}
    out["queue wait"] = delta.queue_wait_ms
    out["mean batch (clips)"] = delta.mean_batch
    return out


def _open_loop(load: _Load, args: argparse.Namespace, per_stream: float) -> LoadResult:
    count = max(3, math.ceil(per_stream * args.load_seconds))
    return load.run(synthetic_jpegs(count, 2), StreamLoad(args.persons, per_stream, count, 0))


def _ms(result: LoadResult, q: float) -> float:
    return 1e3 * percentile(result.latencies, q) if result.latencies else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [
        "person_frames_per_s",
        "client_cpu_ms_per_person_frame",
        "half_load_fps_per_stream",
        "half_load_p50_ms",
        "half_load_p95_ms",
        "same_load_fps_per_stream",
        "same_load_p50_ms",
        "same_load_p95_ms",
    ]
    merged: dict[str, Any] = {key: _median([run[key] for run in runs]) for key in keys}
    cpus = [run["cpu"] for run in runs]
    merged["cpu_ms_per_person_frame"] = {
        key: _median([c[key] for c in cpus]) for key in cpus[0] if key not in ("groups", "stages")
    }
    if "stages" in cpus[0]:
        merged["cpu_ms_per_person_frame"]["stages"] = {
            stage: _median([c["stages"][stage] for c in cpus]) for stage in cpus[0]["stages"]
        }
    stage_runs = [run["same_load_stages_ms"] for run in runs if "same_load_stages_ms" in run]
    if stage_runs:
        merged["same_load_stages_ms"] = {
            stage: _median([r.get(stage, 0.0) for r in stage_runs]) for stage in stage_runs[0]
        }
    if "groups" in cpus[0]:
        names = dict.fromkeys(name for c in cpus for name in c["groups"])
        merged["cpu_ms_per_person_frame"]["groups"] = {
            name: {
                "ms": _median([c["groups"][name]["ms"] if name in c["groups"] else 0.0 for c in cpus]),
                "threads": max(c["groups"][name]["threads"] for c in cpus if name in c["groups"]),
            }
            for name in names
        }
    merged["errors"] = [
        e
        for run in runs
        for e in run["saturation_errors"] + run["half_load_errors"] + run["same_load_errors"]
    ][:5]
    merged["rounds"] = len(runs)
    return merged


def _median(values: list[float]) -> float:
    return float(np.median(values))


def _baseline(spec: str, args: argparse.Namespace) -> float:
    preset, checkpoint = parse_model_spec(spec)
    baseline = NaiveBaseline(build_model(preset.name, checkpoint), preset, torch.device("cpu"))
    frames = [decode_image(jpeg) for jpeg in synthetic_jpegs(args.baseline_frames + preset.num_frames, 3)]
    d = (preset.num_frames - 1) // 2
    clips = [[*frames[t - d : t + 1], *[frames[t]] * d] for t in range(d, d + args.baseline_frames)]
    return baseline.person_frames_per_second(clips, np.array(person_boxes(args.persons), np.float32))


def _render(report: dict[str, Any]) -> None:
    servers = report["servers"]
    rows = [
        [
            name,
            server["person_frames_per_s"],
            server["cpu_ms_per_person_frame"]["session_ms"],
            server["client_cpu_ms_per_person_frame"],
            server["half_load_p50_ms"],
            server["half_load_p95_ms"],
            server["same_load_p50_ms"],
            server["same_load_p95_ms"],
            len(server["errors"]),
        ]
        for name, server in servers.items()
    ]
    rows.append(["naive baseline", report["baseline"]["person_frames_per_s"], "", "", "", "", "", "", ""])
    same_fps = servers["ours"]["same_load_fps_per_stream"] * report["settings"]["streams"]
    print_table(
        [
            "server",
            "person-frames/s (saturation)",
            "CPU ms / person-frame",
            "client CPU ms",
            "p50 ms (own half load)",
            "p95 ms",
            f"p50 ms (same load, {same_fps:.3g} fps)",
            "p95 ms",
            "errors",
        ],
        rows,
    )
    print(
        f"ours / LitServe: {report['ours_over_litserve']:.2f}x; "
        f"ours / naive baseline: {report['ours_over_baseline']:.2f}x"
    )
    print()
    print("our CPU at saturation, per thread group:")
    print_cpu_table(servers["ours"]["cpu_ms_per_person_frame"])
    print()
    print("our CPU at saturation, per stage:")
    print_stage_table(servers["ours"]["cpu_ms_per_person_frame"]["stages"])
    print()
    print("our wall time at the same load, per stage (ms per call; crop, model, post per batch):")
    print_table(("stage", "ms"), list(servers["ours"].get("same_load_stages_ms", {}).items()))
    if len(report["rounds"]["ours"]) > 1:
        print()
        print_table(
            ("round", "server", "person-frames/s", "CPU ms / person-frame", "p95 ms (own half)",
             "p95 ms (same)"),
            [
                (r + 1, name, run["person_frames_per_s"], run["cpu"]["session_ms"], run["half_load_p95_ms"],
                 run["same_load_p95_ms"])
                for r in range(len(report["rounds"]["ours"]))
                for name, runs in report["rounds"].items()
                for run in runs[r : r + 1]
            ],
        )  # fmt: skip
