"""``python -m bench sources``: real RTSP cameras pulled by one server: how many it serves at
their full frame rate, and the camera-to-viewer latency with one viewer and with many.

    python -m bench sources [--cameras 1,2,4|none] [--viewers 1,8|none] [--fps 10] [--seconds 20]
                            [--lookahead N] [--outage SECONDS] [--soak MINUTES] [--soak-cameras 2]
                            [--soak-cycle 30] [--fanout] [--model NAME[=CKPT]] [--detector SPEC]
                            [--threads N] [--json]

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
3. Outage (``--outage SECONDS``): one camera with a viewer; the camera's process killed, and
   started again on the same port after SECONDS. The recovery is the time from the camera
   answering RTSP again to the viewer's first result of a frame captured after that (the target:
   within 5 s of a 10 s outage); beside it, the status events the viewer saw, from the kill on.
4. Soak (``--soak MINUTES``): ``--soak-cameras`` cameras with a viewer; every ``--soak-cycle``
   seconds the oldest source is deleted and its camera killed, a new camera is added and the
   viewer moves to it. The server's RSS, threads and open descriptors (``/proc``) are sampled
   every few seconds after one warm-up swap: RSS at the start, the end and its highest, and the
   slope of a least-squares line over the second half in MiB/min (the target: flat).
5. Fan-out (``--fanout``, in-process, no server): the event loop's CPU time per result with one
   viewer and with the most of ``--viewers`` (``bench/viewer_fanout.py``). ``--cameras none
   --viewers none`` runs only the phases asked for besides.

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
from bench.soak import process_usage
from bench.timing import percentile
from bench.viewer_fanout import fanout_cost
from tests.helpers.cameras import RtspCamera
from tests.helpers.server import free_port

__all__ = ["add_arguments", "main"]

FULL_RATE = 0.95  # processed frames/s at least this share of the camera's: served at full rate
LIVE_TIMEOUT_S = 120.0  # a source live and its viewers' first result, on a busy machine
LATENCY_MARGIN_MS = 150.0  # the target: camera-to-viewer p95 below the model's batch time + this
SETTLE_S = 2.0  # after the first results: FFmpeg's probing burst and the lookahead's fill are over
SOAK_SAMPLE_S = 5.0  # between the soak's samples of the server


def _counts(text: str) -> list[int]:
    """Positive counts, comma-separated; ``none``: the phase is not run."""
    if text.strip() == "none":
        return []
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive counts or none, not {text!r}")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=_counts, default=[1, 2, 4], help="camera counts, e.g. 1,2,4")
    parser.add_argument(
        "--viewers", type=_counts, default=[1, 8], help="viewer counts of one camera, e.g. 1,8"
    )
    parser.add_argument("--fps", type=int, default=10, help="each camera's frame rate (the clip's: 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window of each phase")
    parser.add_argument(
        "--lookahead", type=int, help="future frames a live result waits for (default: the server's)"
    )
    parser.add_argument(
        "--outage", type=float, metavar="SECONDS", help="also: a camera killed for this long, then back"
    )
    parser.add_argument(
        "--soak", type=float, metavar="MINUTES", help="also: cameras added and removed for this long"
    )
    parser.add_argument("--soak-cameras", type=int, default=2, help="cameras live at once in the soak")
    parser.add_argument(
        "--soak-cycle", type=float, default=30.0, help="seconds between the soak's camera swaps"
    )
    parser.add_argument(
        "--fanout", action="store_true", help="also: in-process event-loop CPU per result, 1 and most viewers"
    )
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
        "lookahead": args.lookahead,
        "full_rate_share": FULL_RATE,
        "torch_threads": torch.get_num_threads(),
    }
    report["processes"] = {"server_sessions": [], "camera_pids": []}
    report["cameras"] = report["viewers"] = []
    if args.fanout:
        report["fanout"] = fanout_cost(sorted({1, max(args.viewers, default=8)}))
    if args.cameras or args.viewers or args.outage is not None or args.soak is not None:
        with (
            tempfile.TemporaryDirectory(prefix="tdmi-bench-sources-") as data,
            _server(spec, detector, args, Path(data), report["processes"]) as server,
        ):
            base, processes = server.base, report["processes"]
            report["cameras"] = [_phase(base, cameras, 1, args, processes) for cameras in args.cameras]
            report["viewers"] = [_phase(base, 1, viewers, args, processes) for viewers in args.viewers]
            if args.outage is not None:
                report["outage"] = _outage(base, args.outage, args, processes)
            if args.soak is not None:
                report["soak"] = _soak(server, args, processes)
    if report["cameras"]:
        full = [phase["cameras"] for phase in report["cameras"] if phase["all_at_full_rate"]]
        report["most_cameras_at_full_rate"] = max(full, default=0)
    if report["viewers"]:
        fewest, most = report["viewers"][0], report["viewers"][-1]
        report["fps_most_over_fewest_viewers"] = _ratio(most["processed_fps"], fewest["processed_fps"])
    emit(report, args.json, _render)


@dataclass(frozen=True)
class _Server:
    base: str  # http://127.0.0.1:PORT
    pid: int  # the server's process, whose memory, threads and descriptors the soak samples
    data: Path  # its data directory
    log: Path  # its log, in the data directory


@contextmanager
def _server(
    spec: str, detector: str, args: argparse.Namespace, data: Path, processes: dict[str, list[int]]
) -> Iterator[_Server]:
    """A ready ``tdmi serve`` allowed to pull loopback cameras; its session ended after the block."""
    port = free_port()
    command = [sys.executable, "-m", "tdmi.service.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data), "--model", spec]
    most = max([*args.cameras, args.soak_cameras if args.soak is not None else 1, 1])
    env = {
        "TDMI_DEVICE": "cpu",
        "TDMI_SOURCE_ALLOWED_NETWORKS": "127.0.0.1/32",  # the cameras listen on loopback
        "TDMI_MAX_SOURCES": str(most),
        "TDMI_MAX_STREAMS": str(max(4, most)),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "TDMI_DETECTOR": detector,
    }
    if args.lookahead is not None:
        env["TDMI_LOOKAHEAD"] = str(args.lookahead)
    process = SessionProcess(command, data / "server.log", env)
    processes["server_sessions"].append(process.session)
    try:
        process.wait_healthy(f"http://127.0.0.1:{port}/readyz")
        yield _Server(f"http://127.0.0.1:{port}", process.proc.pid, data, process.log_path)
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
    statuses: list[tuple[float, str, str | None]] = field(default_factory=list)  # (received, status, detail)
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
                    elif message["type"] == "status":
                        self.statuses.append((received, message["status"], message.get("detail")))
        except (OSError, ConnectionClosed, TimeoutError) as error:
            self.error = f"{type(error).__name__}: {error}"
            self.started.set()  # nothing to wait for

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def within(self, start: float, end: float) -> list[_Arrival]:
        return [arrival for arrival in self.arrivals if start <= arrival.received < end]

    def first_captured_after(self, moment: float, timeout: float) -> _Arrival | None:
        """The first result whose frame the camera captured after ``moment``, waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            found = next((a for a in list(self.arrivals) if a.captured > moment), None)
            if found is not None:
                return found
            time.sleep(0.02)
        return None


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


def _outage(
    base: str, outage_s: float, args: argparse.Namespace, processes: dict[str, list[int]]
) -> dict[str, Any]:
    """One camera with a viewer; the camera killed, and started again on its port after
    ``outage_s``. Recovery: from the camera answering again to the viewer's first result of a
    frame captured after that."""
    with RtspCamera(fps=args.fps) as camera, ExitStack() as stack:
        assert camera.proc is not None
        processes["camera_pids"].append(camera.proc.pid)
        created = _post(base, camera.url)
        stack.callback(_delete, base, created["source_id"])
        view = _Viewer(created["links"]["results"])
        stack.callback(view.close)
        if not view.started.wait(LIVE_TIMEOUT_S) or view.error:
            raise RuntimeError(f"the viewer got no result within {LIVE_TIMEOUT_S} s: {view.error}")
        time.sleep(SETTLE_S)
        killed = time.time()
        camera.kill()
        time.sleep(outage_s)
        camera.start()  # returns once the camera answers RTSP again
        back = time.time()
        assert camera.proc is not None
        processes["camera_pids"].append(camera.proc.pid)
        first = view.first_captured_after(back, LIVE_TIMEOUT_S)
        info = _info(base, created["source_id"])
    last_before = max((a.received for a in view.arrivals if a.received < killed), default=None)
    return {
        "outage_s": back - killed,
        "recovery_s": None if first is None else first.received - back,
        "no_results_s": None if first is None or last_before is None else first.received - last_before,
        "statuses": [
            {"at_s": at - killed, "status": status, "detail": detail}
            for at, status, detail in view.statuses
            if at >= killed
        ],
        "reconnects": info["reconnects"],
        "viewer_error": view.error,
    }


def _soak(server: _Server, args: argparse.Namespace, processes: dict[str, list[int]]) -> dict[str, Any]:
    """``--soak-cameras`` cameras, the oldest swapped (its source deleted, its camera killed, a new
    one started and added) ``--soak-cycle`` seconds after the previous swap, and a viewer that
    moves to the newest source at each swap, for ``--soak`` minutes after one warm-up swap; the
    server sampled every ``SOAK_SAMPLE_S``."""
    with ExitStack() as stack:
        live: list[tuple[RtspCamera, str]] = []

        def add() -> str:
            camera = RtspCamera(fps=args.fps)
            camera.start()
            assert camera.proc is not None
            processes["camera_pids"].append(camera.proc.pid)
            created = _post(server.base, camera.url)
            live.append((camera, created["source_id"]))
            return str(created["links"]["results"])

        def remove_all() -> None:
            for camera, source_id in live:
                _delete(server.base, source_id)
                camera.kill()

        stack.callback(remove_all)
        results = [add() for _ in range(args.soak_cameras)][-1]
        viewing = [_watch(results)]
        stack.callback(lambda: viewing[-1].close())

        def swap() -> None:
            camera, source_id = live.pop(0)
            _delete(server.base, source_id)
            camera.kill()
            viewing[-1].close()
            viewing.append(_watch(add()))

        swap()  # warm-up: every step of the cycle has run once before the first sample
        time.sleep(SETTLE_S)
        start = time.monotonic()
        samples, swaps = [_usage(server, 0.0)], 0
        end, next_swap, next_sample = start + 60 * args.soak, start + args.soak_cycle, start + SOAK_SAMPLE_S
        while (now := time.monotonic()) < end:
            if now >= next_swap:
                swap()
                swaps, next_swap = swaps + 1, time.monotonic() + args.soak_cycle
            if now >= next_sample:
                samples.append(_usage(server, time.monotonic() - start))
                while next_sample <= time.monotonic():  # none owed for the time a swap took
                    next_sample += SOAK_SAMPLE_S
            time.sleep(max(0.0, min(end, next_swap, next_sample) - time.monotonic()))
        samples.append(_usage(server, time.monotonic() - start))
    late = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2]
    rss = [s["rss_mib"] for s in samples]
    return {
        "minutes": (samples[-1]["t_s"]) / 60,
        "swaps": swaps,
        "samples": samples,
        "rss_start_mib": rss[0],
        "rss_end_mib": rss[-1],
        "rss_max_mib": max(rss),
        "rss_slope_second_half_mib_per_min": _slope(
            [s["t_s"] / 60 for s in late], [s["rss_mib"] for s in late]
        ),
        "threads": {"start": samples[0]["threads"], "end": samples[-1]["threads"]},
        "open_fds": {"start": samples[0]["open_fds"], "end": samples[-1]["open_fds"]},
    }


def _watch(results_url: str) -> _Viewer:
    view = _Viewer(results_url)
    if not view.started.wait(LIVE_TIMEOUT_S) or view.error:
        raise RuntimeError(f"a viewer got no result within {LIVE_TIMEOUT_S} s: {view.error}")
    return view


def _usage(server: _Server, t_s: float) -> dict[str, float]:
    """The server's resident memory (MiB), open descriptors and threads, from /proc."""
    status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
    threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    return {"t_s": t_s, **process_usage(server.pid, server.data, server.log), "threads": threads}


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """The least-squares slope of ``ys`` over ``xs``."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / spread if spread else None


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
    if rows:
        print_table(
            ["cameras", "viewers each", "processed fps", "slowest", "skipped", "full rate",
             "latency p50 ms", "p95 ms", "in engine p50 ms", "p95 target ms"],
            rows,
        )  # fmt: skip
    if report["cameras"]:
        print(f"most cameras served at full frame rate: {report['most_cameras_at_full_rate']}")
    if report["viewers"]:
        fewest, most = report["viewers"][0], report["viewers"][-1]
        ratio = report["fps_most_over_fewest_viewers"]
        print(f"processed fps with {most['viewers_per_camera']} viewers over {fewest['viewers_per_camera']}: "
              f"{'-' if ratio is None else f'{ratio:.3f}'} (target: at least 0.95)")  # fmt: skip
    if "fanout" in report:
        fanout = report["fanout"]
        per_result = ", ".join(f"{n} viewers {us:.1f}" for n, us in fanout["us_per_result"].items())
        print(
            f"event-loop CPU per result, in-process (µs, median of {fanout['rounds']} rounds): {per_result}"
        )
    if "outage" in report:
        outage = report["outage"]
        events = ", ".join(f"{e['status']} at {e['at_s']:.1f} s" for e in outage["statuses"])
        recovery = outage["recovery_s"]
        print(f"camera away {outage['outage_s']:.1f} s: first new result "
              f"{'never' if recovery is None else f'{recovery:.2f} s'} after it answered again "
              f"(target: within 5 s); viewer saw {events or 'no status event'}")  # fmt: skip
    if "soak" in report:
        soak = report["soak"]
        slope = soak["rss_slope_second_half_mib_per_min"]
        threads, fds = soak["threads"], soak["open_fds"]
        print(f"soak {soak['minutes']:.1f} min, {soak['swaps']} camera swaps: "
              f"RSS {soak['rss_start_mib']:.0f} -> {soak['rss_end_mib']:.0f} MiB "
              f"(max {soak['rss_max_mib']:.0f}), second-half slope "
              f"{'-' if slope is None else f'{slope:+.2f}'} MiB/min; "
              f"threads {threads['start']} -> {threads['end']}, "
              f"open fds {fds['start']} -> {fds['end']}")  # fmt: skip
