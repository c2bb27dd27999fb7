"""``python -m bench service``: a real ``tdmi serve`` under N live streams x K persons, in one run
against the model alone at the same batch size and against the naive baseline.

    python -m bench service [--device cpu|cuda] [--streams 8] [--persons 4] [--frames 30]
                            [--backend auto] [--precision fp32] [--model NAME[=CKPT]]
                            [--loads 0.25 0.5 0.75] [--rounds 1] [--json]

1. Saturation: the server (a subprocess on a free loopback port) takes N WebSocket streams, each
   sending 640x480 JPEG frames with K client boxes (so no detector runs) and keeping at most
   ``--inflight`` frames unanswered. End-to-end frames/s and person-frames/s; p50/p95/p99 latency
   from frame sent to result received; the batch size histogram and the time per stage, from
   the server's ``/metrics`` (the difference of scrapes before and after); the CPU milliseconds
   per person-frame of each of the server's thread groups (the stages they run), of the whole
   process and what no live thread accounts for, from ``/proc``, and of each stage of the live
   path, the event loop's split by the server's CPU counters per stage (``bench.cpu``); and the
   load generator's CPU per person-frame (this process, on the same cores as the server).
2. Load sweep: the same streams sending at fixed rates, fractions of the saturation rate; latency
   percentiles per level (the latency-vs-load plot). The target at half load is p95 within the
   lookahead's frame time (d / per-stream fps) plus 50 ms.
3. Right after each saturation phase, while the server idles, in this process on the same device:
   the model alone (the service's backend and precision, fresh random inputs) at that phase's mean
   batch size. With ``--rounds`` N, saturation and the model alone alternate N times and the
   service / model ratio is the median of the rounds' ratios (each round's numbers under
   ``rounds``): on a shared machine whose speed drifts between minutes, a ratio of two phases
   timed apart measures the drift as much as the service.
4. After the server has stopped: the naive baseline (``bench.baseline``) on the same frames and boxes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.baseline import NaiveBaseline
from bench.cpu import cpu_between, print_cpu_table, print_stage_table, snapshot, stage_cpu_ms
from bench.hardware import (
    add_run_arguments,
    default_model_spec,
    device_from_name,
    parse_model_spec,
    set_threads,
)
from bench.load import LoadResult, StreamLoad, person_boxes, run_streams, synthetic_jpegs
from bench.report import emit, print_table, report_header
from bench.scrape import scrape
from bench.timing import median_seconds, percentile
from tdmi.model.presets import ModelPreset, build_model
from tdmi.service.config import Settings
from tdmi.service.images import decode_image
from tdmi.service.inference.backends import Backend, BackendKind, Precision, make_backend
from tests.helpers.server import ServerProcess

__all__ = ["add_arguments", "main", "measure"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny on CPU, tdmi-w48 on GPU"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "torchscript", "onnxruntime"],
        help="the server's runtime; auto: what the service picks for the device and precision",
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="GPU only")
    parser.add_argument("--streams", type=int, help="concurrent live streams (default 8 on CPU, 16 on GPU)")
    parser.add_argument("--persons", type=int, default=4, help="client boxes per frame")
    parser.add_argument(
        "--frames", type=int, help="frames per stream at saturation (default 30 CPU, 200 GPU)"
    )
    parser.add_argument("--inflight", type=int, default=4, help="unanswered frames per stream at saturation")
    parser.add_argument("--max-batch", type=int, help="TDMI_MAX_BATCH (default 16 on CPU, 64 on GPU)")
    parser.add_argument("--lookahead", type=int, help="live lookahead (default: the model's d)")
    parser.add_argument(
        "--loads", nargs="*", type=float, default=[0.25, 0.5, 0.75], help="fractions of the saturation rate"
    )
    parser.add_argument("--load-seconds", type=float, default=8.0, help="duration of each load level")
    parser.add_argument("--baseline-frames", type=int, default=6, help="frames the naive baseline serves")
    parser.add_argument(
        "--rounds", type=int, default=1, help="saturation and the model alone, alternated; medians reported"
    )
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    device = device_from_name(args.device)
    set_threads(args.threads)
    gpu = device.type == "cuda"
    spec = args.model or default_model_spec(device)
    backend = Settings(device=str(device), backend=args.backend, precision=args.precision).model_backend
    report = measure(
        spec,
        device,
        backend=backend,
        precision=args.precision,
        streams=args.streams or (16 if gpu else 8),
        persons=args.persons,
        frames=args.frames or (200 if gpu else 30),
        inflight=args.inflight,
        max_batch=args.max_batch or (64 if gpu else 16),
        lookahead=args.lookahead,
        loads=args.loads,
        load_seconds=args.load_seconds,
        baseline_frames=args.baseline_frames,
        rounds=args.rounds,
    )
    emit(report, args.json, _render)


def measure(
    spec: str,
    device: torch.device,
    *,
    backend: BackendKind,
    precision: Precision,
    streams: int,
    persons: int,
    frames: int,
    inflight: int,
    max_batch: int,
    lookahead: int | None,
    loads: list[float],
    load_seconds: float,
    baseline_frames: int,
    rounds: int = 1,
) -> dict[str, Any]:
    preset, checkpoint = parse_model_spec(spec)
    d = (preset.num_frames - 1) // 2 if lookahead is None else lookahead
    report = report_header("service", device)
    report["settings"] = {
        "model": preset.name,
        "checkpoint": checkpoint.name if checkpoint else None,
        "backend": backend,
        "precision": precision,
        "streams": streams,
        "persons": persons,
        "frames_per_stream": frames,
        "inflight": inflight,
        "max_batch": max_batch,
        "lookahead": d,
        "boxes": "client (no detector)",
        "torch_threads": torch.get_num_threads(),
    }
    env = {
        "TDMI_DEVICE": str(device),
        "TDMI_PRECISION": precision,
        "TDMI_MAX_BATCH": str(max_batch),
        "TDMI_MAX_STREAMS": str(max(32, streams)),
        "TDMI_STALENESS_MS": "600000",  # measure queueing, do not hide it behind drops
        "TDMI_MAX_FPS": "10000",
        "TDMI_QUEUE_FRAMES": str(max(64, 2 * streams * inflight)),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # the server's torch threads: as this process's
    }
    with tempfile.TemporaryDirectory(prefix="tdmi-bench-") as data, tempfile.TemporaryDirectory() as cache:
        server = ServerProcess(Path(data), "--model", spec, "--backend", backend, env=env)
        model = _ModelAlone(preset, checkpoint, device, backend, precision, Path(cache))
        load = StreamLoad(persons, 0.0, inflight, d)
        try:
            server.wait_ready(timeout=600)
            report["rounds"] = [
                _saturation_round(server, model, streams, synthetic_jpegs(frames, 1), load)
                for _ in range(max(1, rounds))
            ]
            ratios = [r["service_over_model"] for r in report["rounds"]]
            middle = report["rounds"][ratios.index(sorted(ratios)[len(ratios) // 2])]
            saturation = report["saturation"] = middle["saturation"]
            report["model_at_batch"] = middle["model_at_batch"]
            report["service_over_model"] = statistics.median(ratios)
            report["loads"] = []
            for fraction in loads:
                per_stream = fraction * saturation["frames_per_s"] / streams
                count = max(d + 3, math.ceil(per_stream * load_seconds))
                level = _phase(
                    server, streams, synthetic_jpegs(count, 2), StreamLoad(persons, per_stream, count, d)
                )
                level.update(
                    {
                        "fraction_of_saturation": fraction,
                        "offered_frames_per_s": fraction * saturation["frames_per_s"],
                        "per_stream_fps": per_stream,
                        "target_p95_ms": 1e3 * d / per_stream + 50.0,
                    }
                )
                report["loads"].append(level)
        finally:
            server.stop()

    baseline = _baseline(preset, checkpoint, device, persons, baseline_frames)
    report["baseline"] = {
        "person_frames_per_s": baseline,
        "what": "one clip at a time, cv2 crops, eager fp32",
    }
    report["service_over_baseline"] = saturation["person_frames_per_s"] / baseline
    half = [level for level in report["loads"] if level["fraction_of_saturation"] == 0.5]
    report["half_load_p95_within_target"] = (
        half[0]["latency_ms"]["p95"] <= half[0]["target_p95_ms"]
        if half and half[0]["frames_answered"]
        else None
    )
    return report


def _saturation_round(
    server: ServerProcess, model: _ModelAlone, streams: int, jpegs: list[bytes], load: StreamLoad
) -> dict[str, Any]:
    """The server saturated, then the model alone at the batch size it ran (the server idle)."""
    phase = _phase(server, streams, jpegs, load)
    alone = model.at_batch(max(1, round(phase["mean_batch"])))
    ratio = phase["person_frames_per_s"] / alone["clips_per_s"]
    return {"saturation": phase, "model_at_batch": alone, "service_over_model": ratio}


def _phase(server: ServerProcess, streams: int, jpegs: list[bytes], load: StreamLoad) -> dict[str, Any]:
    before = scrape(server.base)
    cpu_before = snapshot(server.proc.pid)  # after the scrape: its CPU is not the phase's
    result = run_streams(server.ws_base, streams, jpegs, load)
    cpu = cpu_between(cpu_before, snapshot(server.proc.pid))
    delta = scrape(server.base).since(before)
    answered = len(result.latencies)
    person_frames = answered * load.persons
    return {
        "frames_answered": answered,
        "frames_dropped": len(result.dropped),
        "errors": result.errors[:5],
        "seconds": result.seconds,
        "frames_per_s": answered / result.seconds,
        "person_frames_per_s": answered * load.persons / result.seconds,
        "latency_ms": _latency(result),
        "batch_histogram": delta.batch_histogram(),
        "mean_batch": delta.mean_batch,
        "stages": delta.stages(),
        "cpu_ms_per_person_frame": cpu.per_unit_ms(person_frames) if answered else None,
        "client_cpu_ms_per_person_frame": result.client_cpu_ms(person_frames) if answered else None,
        "cpu_ms_per_person_frame_by_stage": stage_cpu_ms(cpu, delta.stage_cpu, person_frames)
        if answered
        else None,
        "queue_wait_ms_mean": delta.queue_wait_ms,
    }


def _latency(result: LoadResult) -> dict[str, float | None]:
    if not result.latencies:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": 1e3 * percentile(result.latencies, q) for q in (50, 95, 99)}


class _ModelAlone:
    """The service's backend in this process, built once (an ONNX file is exported once), timed at
    the batch sizes the service ran, on fresh random inputs."""

    def __init__(
        self,
        preset: ModelPreset,
        checkpoint: Path | None,
        device: torch.device,
        backend: BackendKind,
        precision: Precision,
        cache: Path,
    ):
        self.preset, self.checkpoint, self.device = preset, checkpoint, device
        self.backend, self.precision, self.cache = backend, precision, cache
        self._runner: Backend | None = None

    def at_batch(self, batch: int) -> dict[str, Any]:
        if self._runner is None:  # built on first use: the server has started meanwhile, not beside it
            self._runner = make_backend(
                self.backend,
                build_model(self.preset.name, self.checkpoint),
                self.preset,
                self.device,
                self.precision,
                self.cache,
                "bench",
                threads=torch.get_num_threads(),  # as the server (ONNX Runtime would take all cores)
            )
        shape = self.preset.input_shape(batch)
        seconds = median_seconds(self._runner, lambda: torch.randn(shape, device=self.device), self.device, 5)
        return {
            "batch": batch,
            "ms_per_batch": 1e3 * seconds,
            "clips_per_s": batch / seconds,
            "backend": self.backend,
        }


def _baseline(
    preset: ModelPreset, checkpoint: Path | None, device: torch.device, persons: int, count: int
) -> float:
    d = (preset.num_frames - 1) // 2
    images = [decode_image(j) for j in synthetic_jpegs(count + 2 * d, 1)]
    clips = [images[t - d : t + d + 1] for t in range(d, d + count)]
    naive = NaiveBaseline(build_model(preset.name, checkpoint), preset, device)
    return naive.person_frames_per_second(clips, np.array(person_boxes(persons)))


def _render(report: dict[str, Any]) -> None:
    s, sat = report["settings"], report["saturation"]
    print(
        f"{s['model']} ({s['backend']}, {s['precision']}), {s['streams']} streams x {s['persons']} persons, "
        f"max batch {s['max_batch']}, lookahead {s['lookahead']}"
    )
    print()
    rows = [("saturation", None, sat)] + [
        (f"{lv['fraction_of_saturation']:g} x sat", lv["offered_frames_per_s"], lv) for lv in report["loads"]
    ]
    print_table(
        ("load", "offered fps", "fps", "person-fps", "p50 ms", "p95 ms", "p99 ms", "dropped", "mean batch"),
        [
            (name, offered, lv["frames_per_s"], lv["person_frames_per_s"], lv["latency_ms"]["p50"],
             lv["latency_ms"]["p95"], lv["latency_ms"]["p99"], lv["frames_dropped"], lv["mean_batch"])
            for name, offered, lv in rows
        ],
    )  # fmt: skip
    print()
    print("batch histogram at saturation (clips: batches):", sat["batch_histogram"])
    print_table(
        ("stage", "calls", "ms/call", "total s"),
        [(k, v["calls"], v["ms_per_call"], v["total_s"]) for k, v in sat["stages"].items()],
    )
    print()
    client = sat["client_cpu_ms_per_person_frame"]
    print(f"the load generator's CPU beside it (this process): {client:.3g} ms per person-frame")
    print("CPU at saturation, per thread group:")
    print_cpu_table(sat["cpu_ms_per_person_frame"])
    print()
    print("CPU at saturation, per stage:")
    print_stage_table(sat["cpu_ms_per_person_frame_by_stage"])
    m, b = report["model_at_batch"], report["baseline"]
    print()
    print(
        f"model alone at batch {m['batch']}: {m['clips_per_s']:.3g} clips/s"
        f" ({m['ms_per_batch']:.3g} ms/batch)"
    )
    ratios = ", ".join(f"{r['service_over_model']:.3f}" for r in report["rounds"])
    print(f"service / model at that batch: {report['service_over_model']:.3f} (rounds: {ratios})")
    print(f"naive baseline: {b['person_frames_per_s']:.3g} person-frames/s ({b['what']})")
    print(f"service / naive baseline: {report['service_over_baseline']:.2f}x")
    for lv in report["loads"]:
        if lv["fraction_of_saturation"] == 0.5 and lv["frames_answered"]:
            print(
                f"half load p95 {lv['latency_ms']['p95']:.0f} ms, target {lv['target_p95_ms']:.0f} ms "
                f"(lookahead {s['lookahead']} / {lv['per_stream_fps']:.3g} fps + 50 ms): "
                f"{'met' if report['half_load_p95_within_target'] else 'not met'}"
            )
