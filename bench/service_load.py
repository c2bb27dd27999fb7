"""End-to-end throughput and latency of the live service against the raw model, in one run.

    python -m bench.service_load --streams 4 --persons 3 --frames 60 [--fps 0] [--device cpu]
                                 [--backend torch] [--model tdmi-tiny[=CKPT]] [--json]

Starts ``tdmi serve`` on a free loopback port, opens N WebSocket streams, each sending F JPEG
frames (640x480) with K client boxes per frame, as fast as the ack window allows (or at
``--fps``). Reports frames/s over all streams, p50/p95 latency (frame sent -> result received),
the server's batch size histogram, and, on the same device in this process, the raw model's
frames/s at the service's mean batch size (crop + model + decode on ready tensors). The ratio of
the two is the service's overhead: decoding JPEGs, batching, tracking, JSON, WebSocket I/O.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from model.presets import build_model
from protocol.stream import pack_frame
from service.inference.backends import make_backend
from service.inference.runtime import parse_model_spec
from service.inference.work import FrameWork
from service.inference.worker import InferenceWorker
from tests.helpers.server import ServerProcess

WIDTH, HEIGHT = 640, 480


def _frames(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 3)
    return [cv2.imencode(".jpg", np.roll(base, 4 * i, axis=1))[1].tobytes() for i in range(count)]


def _boxes(persons: int) -> list[list[float]]:
    step = WIDTH / persons
    return [[i * step + 10, 60.0, (i + 1) * step - 10, HEIGHT - 20.0] for i in range(persons)]


def _stream(
    base: str, jpegs: list[bytes], persons: int, fps: float, latencies: list[float], dropped: list[str]
) -> None:
    sent: dict[int, float] = {}
    with connect(f"{base}/v1/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "detector": "client", "ack_window": 8}))
        json.loads(ws.recv(timeout=60))

        def receive() -> None:
            while True:
                message = json.loads(ws.recv(timeout=120))
                if message["type"] == "ended":
                    return
                if message["type"] == "result":
                    latencies.append(time.perf_counter() - sent[message["frame_id"]])
                elif message["type"] == "dropped":
                    dropped.append(message["reason"])
                with contextlib.suppress(ConnectionClosed):  # the last acks may cross the close
                    ws.send(json.dumps({"type": "ack", "frame_id": message["frame_id"]}))

        reader = threading.Thread(target=receive)
        reader.start()
        for i, jpeg in enumerate(jpegs):
            ws.send(json.dumps({"type": "boxes", "frame_id": i, "boxes": _boxes(persons)}))
            sent[i] = time.perf_counter()
            ws.send(pack_frame(jpeg, i, time.time()))
            if fps > 0:
                time.sleep(1.0 / fps)
        ws.send(json.dumps({"type": "end"}))
        reader.join()


def _batch_histogram(metrics: str) -> dict[str, float]:
    buckets = dict(re.findall(r'tdmi_batch_size_clips_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics))
    total = float(re.search(r"tdmi_batch_size_clips_sum ([0-9.e+]+)", metrics).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"tdmi_batch_size_clips_count ([0-9.e+]+)", metrics).group(1))  # type: ignore[union-attr]
    out, previous = {}, 0.0
    for bound, cumulative in buckets.items():
        out[bound] = float(cumulative) - previous
        previous = float(cumulative)
    out["mean"] = total / max(count, 1.0)
    return out


def _raw_frames_per_second(spec: str, device: str, backend: str, batch: int, persons: int) -> float:
    """Frames/s of crop + model + decode alone, on ready frames, at the service's batch size."""
    import asyncio

    preset, checkpoint = parse_model_spec(spec)
    net = build_model(preset.name, checkpoint)
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as cache:
        worker = InferenceWorker(
            preset, make_backend(backend, net, preset, dev, "fp32", Path(cache), "bench"), dev, batch
        )
    frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR_RGB) for j in _frames(5, 0)]
    per_batch = max(1, batch // persons)

    async def works() -> list[FrameWork]:
        return [
            FrameWork(
                f"s{i}",
                0,
                dict(enumerate(frames)),
                list(range(preset.num_frames)),
                np.array(_boxes(persons), np.float32),
            )
            for i in range(per_batch)
        ]

    batch_works = asyncio.run(works())
    worker.warm_up()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        worker.run(batch_works)
        times.append(time.perf_counter() - start)
    return per_batch / statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--persons", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60, help="frames per stream")
    parser.add_argument(
        "--fps", type=float, default=0.0, help="send rate per stream (0: as fast as acks allow)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch", choices=["torch", "torchscript", "onnxruntime"])
    parser.add_argument("--model", default="tdmi-tiny")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    env = {
        "TDMI_DEVICE": args.device,
        "TDMI_MAX_BATCH": str(args.max_batch),
        "TDMI_STALENESS_MS": "600000",
        "TDMI_MAX_FPS": "10000",
    }
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(Path(data), "--model", args.model, "--backend", args.backend, env=env)
        try:
            server.wait_ready(timeout=600)
            jpegs = _frames(args.frames, 1)
            latencies: list[float] = []
            dropped: list[str] = []
            stream_args = (server.ws_base, jpegs, args.persons, args.fps, latencies, dropped)
            threads = [threading.Thread(target=_stream, args=stream_args) for _ in range(args.streams)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            import httpx

            histogram = _batch_histogram(httpx.get(f"{server.base}/metrics").text)
        finally:
            server.stop()
    served = len(latencies) / elapsed
    batch = max(1, round(histogram["mean"]))
    raw = _raw_frames_per_second(args.model, args.device, args.backend, batch, args.persons)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "device": args.device,
        "backend": args.backend,
        "model": args.model.split("=")[0],
        "streams": args.streams,
        "persons_per_frame": args.persons,
        "frames_answered": len(latencies),
        "frames_dropped": len(dropped),
        "service_frames_per_s": round(served, 2),
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "latency_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
        "mean_batch_clips": round(histogram["mean"], 2),
        "raw_model_frames_per_s_at_that_batch": round(raw, 2),
        "service_over_raw": round(served / raw, 3),
        "batch_histogram": {k: int(v) for k, v in histogram.items() if k != "mean" and v},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key:>38}: {value}")


if __name__ == "__main__":
    main()
