"""Load for a live server: N WebSocket streams, each sending JPEG frames with K client boxes.

Two ways to load it. Closed loop (saturation): each stream keeps at most ``inflight`` frames
unanswered, so the server always has work and its queue stays bounded. Open loop (a load level):
each stream sends at a fixed rate on a fixed schedule whatever the answers do, as cameras do,
the streams' schedules spread evenly over one frame interval (cameras are not in phase).
Latency is from the moment a frame is sent to the moment its result is received, and so includes
the lookahead: frame t can only be answered once frame t+d has been sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tdmi.protocol.stream import pack_frame

__all__ = ["LoadResult", "StreamLoad", "person_boxes", "run_each", "run_streams", "synthetic_jpegs"]

WIDTH, HEIGHT = 640, 480


def synthetic_jpegs(count: int, seed: int) -> list[bytes]:
    """``count`` 640x480 JPEG frames of smooth random texture panning right (never blank)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 3)
    return [cv2.imencode(".jpg", np.roll(base, 4 * i, axis=1))[1].tobytes() for i in range(count)]


def person_boxes(persons: int) -> list[list[float]]:
    """``persons`` side-by-side standing boxes filling the frame's width."""
    step = WIDTH / persons
    return [[i * step + 10, 60.0, (i + 1) * step - 10, HEIGHT - 20.0] for i in range(persons)]


@dataclass(frozen=True)
class StreamLoad:
    """How every stream sends: ``fps`` 0 is closed loop with ``inflight`` unanswered frames."""

    persons: int
    fps: float = 0.0
    inflight: int = 4
    lookahead: int | None = None


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, answered frames
    dropped: list[str] = field(default_factory=list)  # reasons
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0  # this process's CPU meanwhile: the load generator's, beside the server
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client_cpu_ms(self, units: int) -> float:
        """The load generator's CPU milliseconds per unit (person-frame) served."""
        return 1e3 * self.client_cpu_seconds / units


def run_streams(ws_base: str, streams: int, jpegs: list[bytes], load: StreamLoad) -> LoadResult:
    """Run ``streams`` concurrent WebSocket streams of ``jpegs`` until every one has ended."""
    return run_each(streams, lambda k, result, phase: _stream(ws_base, jpegs, load, result, phase))


def run_each(streams: int, one: Callable[[int, LoadResult, float], None]) -> LoadResult:
    """Run ``one(k, result, phase)`` for streams k = 0..streams-1 in threads until all have ended;
    ``phase`` (0..1) spreads open-loop schedules over one frame interval."""
    result = LoadResult()
    threads = [threading.Thread(target=one, args=(k, result, k / streams)) for k in range(streams)]
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    result.client_cpu_seconds = time.process_time() - cpu
    return result


def _stream(ws_base: str, jpegs: list[bytes], load: StreamLoad, result: LoadResult, phase: float) -> None:
    """One stream; an open-loop one starts ``phase`` (0..1) of a frame interval late."""
    sent: dict[int, float] = {}
    window = threading.Semaphore(load.inflight)
    boxes = person_boxes(load.persons)
    with connect(f"{ws_base}/v1/stream", max_size=None) as ws:
        config = {"type": "config", "detector": "client", "ack_window": max(8, 2 * load.inflight)}
        if load.lookahead is not None:
            config["lookahead"] = load.lookahead
        ws.send(json.dumps(config))
        ready = json.loads(ws.recv(timeout=120))
        if ready.get("type") != "ready":
            raise RuntimeError(f"stream not ready: {ready}")

        def receive() -> None:
            while True:
                message = json.loads(ws.recv(timeout=300))
                kind = message["type"]
                if kind == "ended":
                    return
                now = time.perf_counter()
                with result.lock:
                    if kind == "result":
                        result.latencies.append(now - sent[message["frame_id"]])
                    elif kind == "dropped":
                        result.dropped.append(message["reason"])
                    else:
                        result.errors.append(json.dumps(message))
                if "frame_id" in message and kind in ("result", "dropped"):
                    window.release()
                    with contextlib.suppress(ConnectionClosed):  # the last acks may cross the close
                        ws.send(json.dumps({"type": "ack", "frame_id": message["frame_id"]}))

        reader = threading.Thread(target=receive)
        reader.start()
        start = time.perf_counter() + (phase / load.fps if load.fps > 0 else 0.0)
        for i, jpeg in enumerate(jpegs):
            if load.fps > 0:
                time.sleep(max(0.0, start + i / load.fps - time.perf_counter()))
            else:
                window.acquire()
            ws.send(json.dumps({"type": "boxes", "frame_id": i, "boxes": boxes}))
            sent[i] = time.perf_counter()
            ws.send(pack_frame(jpeg, i, time.time()))
        ws.send(json.dumps({"type": "end"}))
        reader.join()
