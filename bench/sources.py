"""``python -m bench sources``: real RTSP cameras pulled by one server: how many it serves at
their full frame rate, and the camera-to-viewer latency with one viewer and with many.

    python -m bench sources [--cameras 1,2,4] [--viewers 1,8] [--fps 10] [--seconds 20]
                            [--model NAME[=CKPT]] [--detector SPEC] [--threads N] [--json]

The cameras are GStreamer's RTSP server (tests/helpers/cameras.py: the pedestrians clip, looped,
H.264 at ``--fps``), each a process of its own; the server (``tdmi serve``, a session of its own)
pulls them as sources (``POST /v1/sources``). Both run on this machine, so they share its cores
and its clock.

1. Cameras: for each N of ``--cameras``, N cameras added at once, one viewer each. Over
   ``--seconds`` (after the sources are live and a viewer has its first result): frames read,
   processed and skipped per camera, from ``GET /v1/sources/{id}`` at the start and the end of
   the window, and the results each viewer received. A camera is served at full rate when its
   processed frames/s reach ``FULL_RATE`` of ``--fps``; the headline is the largest N whose
   cameras all are.
2. Viewers: one camera, and V viewers of it for each V of ``--viewers``. The latency of a result
   is its arrival at the viewer less its ``timestamp``: when the camera captured the frame, the
   server's mapping of the stream's pts to wall-clock time (the offset taken from the frame that
   arrived soonest after its pts, so the camera's own encoding and sending of that fastest frame
   is not counted). p50/p95 over every viewer's results; the processed frames/s with the most
   viewers against the fewest (the target: at most 5% lower). Beside it: the part of it spent in
   the engine (the result's ``latency_ms``), and the model's time per batch (``/metrics``) + 150 ms,
   the target for the p95.

Every process started ends with the bench: the cameras are killed after each phase and the
server's session is ended whole; the report lists their ids (``processes``) so that a test can
check that none is left.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import torch
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bench.hardware import add_run_arguments, add_server_model_arguments, server_model, set_threads
from bench.processes import SessionProcess
from bench.report import emit, print_table, report_header
from bench.scrape import scrape
from bench.timing import percentile
from tests.helpers.cameras import RtspCamera
from tests.helpers.server import free_port

__all__ = ["add_arguments", "main"]

FULL_RATE = 0.95  # processed frames/s at least this share of the camera's: served at full rate
LIVE_TIMEOUT_S = 120.0  # a source live and its viewers' first result, on a busy machine
LATENCY_MARGIN_MS = 150.0  # the target: camera-to-viewer p95 below the model's batch time + this
SETTLE_S = 2.0  # after the first results: FFmpeg's probing burst and the lookahead's fill are over


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive counts, not {text!r}")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=_counts, default=[1, 2, 4], help="camera counts, e.g. 1,2,4")
    parser.add_argument(
        "--viewers", type=_counts, default=[1, 8], help="viewer counts of one camera, e.g. 1,8"
    )
    parser.add_argument("--fps", type=int, default=10, help="each camera's frame rate (the clip's: 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window of each phase")
    add_server_model_arguments(parser)
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    spec, detector = server_model(args)
    report = report_header("sources", torch.device("cpu"))
    report["settings"] = {
        "model": spec.split("=")[0],
        "detector": detector,
        "camera_fps": args.fps,
        "seconds": args.seconds,
        "full_rate_share": FULL_RATE,
        "torch_threads": torch.get_num_threads(),
    }
    report["processes"] = {"server_sessions": [], "camera_pids": []}
    with (
        tempfile.TemporaryDirectory(prefix="tdmi-bench-sources-") as data,
        _server(spec, detector, args, Path(data), report["processes"]) as base,
    ):
        report["cameras"] = [_phase(base, cameras, 1, args, report["processes"]) for cameras in args.cameras]
        report["viewers"] = [_phase(base, 1, viewers, args, report["processes"]) for viewers in args.viewers]
    full = [phase["cameras"] for phase in report["cameras"] if phase["all_at_full_rate"]]
    report["most_cameras_at_full_rate"] = max(full, default=0)
    fewest, most = report["viewers"][0], report["viewers"][-1]
    report["fps_most_over_fewest_viewers"] = _ratio(most["processed_fps"], fewest["processed_fps"])
    emit(report, args.json, _render)


@contextmanager
def _server(
    spec: str, detector: str, args: argparse.Namespace, data: Path, processes: dict[str, list[int]]
) -> Iterator[str]:
    """A ready ``tdmi serve`` allowed to pull loopback cameras; its session ended after the block."""
    port = free_port()
    command = [sys.executable, "-m", "tdmi.service.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data), "--model", spec]
    most = max(*args.cameras, 1)
    env = {
        "TDMI_DEVICE": "cpu",
        "TDMI_SOURCE_ALLOWED_NETWORKS": "127.0.0.1/32",  # the cameras listen on loopback
        "TDMI_MAX_SOURCES": str(most),
        "TDMI_MAX_STREAMS": str(max(4, most)),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "TDMI_DETECTOR": detector,
    }
    process = SessionProcess(command, data / "server.log", env)
    processes["server_sessions"].append(process.session)
    try:
        process.wait_healthy(f"http://127.0.0.1:{port}/readyz")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


class _Arrival(NamedTuple):
    received: float  # wall-clock seconds the viewer received the result
    captured: float  # wall-clock seconds the camera captured its frame (the result's timestamp)
    engine_ms: float  # the result's latency_ms: the frame entering the engine -> the result sent


@dataclass
class _Viewer:
    """One viewer of a source on a thread: each result's arrival and the camera's capture time."""

    url: str
    started: threading.Event = field(default_factory=threading.Event)  # its first result arrived
    stopping: threading.Event = field(default_factory=threading.Event)
    arrivals: list[_Arrival] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="bench-viewer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with connect(self.url, open_timeout=LIVE_TIMEOUT_S) as ws:
                while not self.stopping.is_set():
                    try:
                        raw = ws.recv(timeout=1.0)
                    except TimeoutError:
                        continue
                    received = time.time()
                    message = json.loads(raw)
                    if message["type"] == "result" and message["timestamp"] is not None:
                        self.arrivals.append(_Arrival(received, message["timestamp"], message["latency_ms"]))
                        self.started.set()
                    elif message["type"] == "dropped":
                        self.dropped += message["count"]
        except (OSError, ConnectionClosed, TimeoutError) as error:
            self.error = f"{type(error).__name__}: {error}"
            self.started.set()  # nothing to wait for

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def within(self, start: float, end: float) -> list[_Arrival]:
        return [arrival for arrival in self.arrivals if start <= arrival.received < end]


def _phase(
    base: str,
    cameras: int,
    viewers_per_camera: int,
    args: argparse.Namespace,
    processes: dict[str, list[int]],
) -> dict[str, Any]:
    """``cameras`` cameras into the server, ``viewers_per_camera`` viewers each, measured over
    ``args.seconds``; every source deleted and every camera killed after it."""
    with ExitStack() as stack:
        sources: list[tuple[str, list[_Viewer]]] = []
        for _ in range(cameras):
            camera = stack.enter_context(RtspCamera(fps=args.fps))
            assert camera.proc is not None
            processes["camera_pids"].append(camera.proc.pid)
            created = _post(base, camera.url)
            stack.callback(_delete, base, created["source_id"])
            views = [_Viewer(created["links"]["results"]) for _ in range(viewers_per_camera)]
            for view in views:
                stack.callback(view.close)
            sources.append((created["source_id"], views))
        for _, views in sources:
            for view in views:
                if not view.started.wait(LIVE_TIMEOUT_S) or view.error:
                    raise RuntimeError(f"a viewer got no result within {LIVE_TIMEOUT_S} s: {view.error}")
        time.sleep(SETTLE_S)
        before = [_info(base, source_id) for source_id, _ in sources]
        metrics, start = scrape(base), time.time()
        time.sleep(args.seconds)
        after = [_info(base, source_id) for source_id, _ in sources]
        end, model = time.time(), scrape(base).since(metrics).stages().get("model")
        per_camera = [_camera(b, a, views, start, end) for b, a, (_, views) in zip(before, after, sources)]
    timed = [arrival for _, views in sources for view in views for arrival in view.within(start, end)]
    processed = [c["processed_fps"] for c in per_camera]
    latency = _percentiles([1e3 * (a.received - a.captured) for a in timed])
    target = model["ms_per_call"] + LATENCY_MARGIN_MS if model else None
    return {
        "cameras": cameras,
        "viewers_per_camera": viewers_per_camera,
        "seconds": end - start,
        "per_camera": per_camera,
        "processed_fps": sum(processed) / len(processed),
        "all_at_full_rate": all(fps >= FULL_RATE * args.fps for fps in processed),
        "latency_ms": latency,
        "engine_latency_ms": _percentiles([a.engine_ms for a in timed]),
        "results_timed": len(timed),
        "model_ms_per_batch": model["ms_per_call"] if model else None,
        "p95_target_ms": target,
        "p95_within_target": None if target is None or latency["p95"] is None else latency["p95"] < target,
    }


def _camera(
    before: dict[str, Any], after: dict[str, Any], views: list[_Viewer], start: float, end: float
) -> dict[str, Any]:
    seconds = end - start
    received = [len(view.within(start, end)) for view in views]
    return {
        "camera_fps": after["camera_fps"],
        "size": f"{after['width']}x{after['height']}",
        "read_fps": (after["frames_read"] - before["frames_read"]) / seconds,
        "processed_fps": (after["frames_processed"] - before["frames_processed"]) / seconds,
        "skipped": after["frames_skipped"] - before["frames_skipped"],
        "reconnects": after["reconnects"] - before["reconnects"],
        "viewer_results_per_s": min(received) / seconds,  # the slowest viewer's
        "viewer_dropped": sum(view.dropped for view in views),
        "viewer_errors": [view.error for view in views if view.error],  # a viewer cut off early
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _post(base: str, url: str) -> dict[str, Any]:
    reply = httpx.post(f"{base}/v1/sources", json={"url": url}, timeout=30)
    reply.raise_for_status()
    created: dict[str, Any] = reply.json()
    return created


def _info(base: str, source_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{base}/v1/sources/{source_id}", timeout=30)
    reply.raise_for_status()
    info: dict[str, Any] = reply.json()
    return info


def _delete(base: str, source_id: str) -> None:
    httpx.delete(f"{base}/v1/sources/{source_id}", timeout=30).raise_for_status()


def _render(report: dict[str, Any]) -> None:
    settings = report["settings"]
    print(f"{settings['model']}, detector {settings['detector']}, cameras at {settings['camera_fps']} fps, "
          f"{settings['seconds']:g} s per phase")  # fmt: skip
    rows = []
    for phase in report["cameras"] + report["viewers"]:
        cameras = phase["per_camera"]
        rows.append([
            phase["cameras"], phase["viewers_per_camera"], phase["processed_fps"],
            min(c["processed_fps"] for c in cameras), sum(c["skipped"] for c in cameras),
            "yes" if phase["all_at_full_rate"] else "no",
            phase["latency_ms"]["p50"], phase["latency_ms"]["p95"], phase["engine_latency_ms"]["p50"],
            phase["p95_target_ms"],
        ])  # fmt: skip
    print_table(
        ["cameras", "viewers each", "processed fps", "slowest", "skipped", "full rate",
         "latency p50 ms", "p95 ms", "in engine p50 ms", "p95 target ms"],
        rows,
    )  # fmt: skip
    print(f"most cameras served at full frame rate: {report['most_cameras_at_full_rate']}")
    fewest, most = report["viewers"][0], report["viewers"][-1]
    ratio = report["fps_most_over_fewest_viewers"]
    print(f"processed fps with {most['viewers_per_camera']} viewers over {fewest['viewers_per_camera']}: "
          f"{'-' if ratio is None else f'{ratio:.3f}'} (target: at least 0.95)")  # fmt: skip
