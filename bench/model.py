"""``python -m bench model``: clips/s and ms per batch of each preset, variant and batch size, in one run.

    python -m bench model [--device cpu|cuda] [--presets ...] [--batches ...] [--variants ...]
                          [--repeats N] [--json]

A clip is one person at one key frame (5 crops for TDMI presets, 1 image for HRNet presets).
The variants of a preset take turns call by call at each batch size (so that on a shared machine
they meet the same contention), each on a fresh random input. Every variant (see
``bench.variants``) runs the same weights (deterministic random values: an
untrained head is zero, which would hide every error) on fresh random inputs; its error
is measured against eager fp32 on one fixed input of the same batch. FLOPs per clip are counted
once per preset (``bench.flops``), and the share of eager time spent in the deformable
convolutions at the largest batch (``bench.dcn``); the device's peak matrix rate is measured in the same run
(``bench.hardware``), and utilisation is the model's achieved FLOP/s over the peak of the
variant's precision.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from typing import Any

import torch
from torch import nn

from bench.dcn import deformable_share
from bench.flops import flops_per_clip
from bench.hardware import add_run_arguments, device_from_name, measure_peak_flops, set_threads
from bench.report import emit, print_table, report_header
from bench.timing import Unavailable, synchronize, timed_call
from bench.variants import VARIANTS, Runner, build_runner, default_variants
from tdmi.model.export import relative_error
from tdmi.model.presets import PRESETS, build_model, get_preset
from tests.helpers.weights import randomize

__all__ = ["add_arguments", "main", "measure"]

GPU_BATCHES = [1, 2, 4, 8, 16, 32, 64]
CPU_BATCHES = [1, 2, 4, 8, 16]
CPU_PRESETS = ["tdmi-tiny", "hrnet-tiny"]
GPU_PRESETS = ["tdmi-w48-384x288", "tdmi-tiny"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--presets", nargs="+", choices=list(PRESETS), help="default: tiny on CPU, W48 on GPU"
    )
    parser.add_argument("--batches", nargs="+", type=int, help="default: 1..16 on CPU, 1..64 on GPU")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="default: all but compile on CPU"
    )
    parser.add_argument("--repeats", type=int, help="timed calls per point (default 5 on CPU, 20 on GPU)")
    add_run_arguments(parser)


def main(args: argparse.Namespace) -> None:
    device = device_from_name(args.device)
    set_threads(args.threads)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True  # cuDNN autotuning, as the service does on a GPU
    report = measure(
        args.presets or (GPU_PRESETS if gpu else CPU_PRESETS),
        args.batches or (GPU_BATCHES if gpu else CPU_BATCHES),
        args.variants or default_variants(device),
        device,
        args.repeats or (20 if gpu else 5),
    )
    emit(report, args.json, _render)


def peak_flops(device: torch.device) -> dict[str, float]:
    """The device's measured dense matrix rate (FLOP/s) per precision the variants use."""
    precisions = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32"]
    return {p: measure_peak_flops(device, p) for p in precisions}


def measure(
    presets: list[str], batches: list[int], variants: list[str], device: torch.device, repeats: int
) -> dict[str, Any]:
    report = report_header("model", device)
    peaks = peak_flops(device)
    report.update(
        {
            "repeats": repeats,
            "peak_flops": peaks,
            "flops_per_clip": {p: flops_per_clip(p) for p in presets},
            "deformable_conv_share": {},
            "rows": [],
            "unavailable": [],
        }
    )
    for name in presets:
        preset = get_preset(name)
        base = randomize(build_model(name)).to(device)
        runners: dict[str, Runner] = {}
        for label in ["eager-fp32", *(v for v in variants if v != "eager-fp32")]:
            try:
                runners[label] = build_runner(VARIANTS[label], copy.deepcopy(base), preset, device)
            except Unavailable as exc:
                report["unavailable"].append({"preset": name, "variant": label, "reason": str(exc)})
        rows = []
        for batch in batches:
            seconds = _interleaved(runners, preset.input_shape(batch), device, repeats, name, report)
            probe = _probe(preset.input_shape(batch), device)
            with torch.inference_mode():
                reference = base(probe).float().cpu().numpy()
            for label, median in seconds.items():
                error = relative_error(runners[label](probe).float().cpu().numpy(), reference)
                achieved = report["flops_per_clip"][name] * batch / median
                fp32 = seconds.get("eager-fp32")
                rows.append(
                    {
                        "preset": name,
                        "variant": label,
                        "precision": VARIANTS[label].precision,
                        "batch": batch,
                        "ms_per_batch": 1e3 * median,
                        "clips_per_s": batch / median,
                        "speedup_vs_eager_fp32": fp32 / median if fp32 else None,
                        "rel_error_vs_fp32": error,
                        "achieved_tflops": achieved / 1e12,
                        "utilisation": achieved / peaks.get(VARIANTS[label].precision, peaks["fp32"]),
                    }
                )
        order = list(runners)
        report["rows"] += sorted(rows, key=lambda r: (order.index(r["variant"]), r["batch"]))
        runners.clear()
        _release(device)
        report["deformable_conv_share"][name] = _dcn_shares(base, preset.input_shape(max(batches)), device)
    return report


def _interleaved(
    runners: dict[str, Runner],
    shape: tuple[int, ...],
    device: torch.device,
    repeats: int,
    preset: str,
    report: dict[str, Any],
    warmup: int = 2,
) -> dict[str, float]:
    """Median seconds per call of every runner at one batch, the runners taking turns call by call.

    Taking turns puts every variant under the same conditions (on a shared machine, the same
    moments of contention). A runner out of device memory leaves the round, and the larger batches.
    """
    times: dict[str, list[float]] = {label: [] for label in runners}
    for i in range(warmup + repeats):
        for label in list(times):
            try:
                seconds = timed_call(runners[label], torch.randn(shape, device=device), device)
            except torch.OutOfMemoryError:
                del times[label], runners[label]
                _release(device)
                report["unavailable"].append(
                    {"preset": preset, "variant": label, "reason": f"out of memory at batch {shape[0]}"}
                )
                continue
            if i >= warmup:
                times[label].append(seconds)
    return {label: statistics.median(values) for label, values in times.items()}


def _dcn_shares(network: nn.Module, shape: tuple[int, ...], device: torch.device) -> dict[str, float | None]:
    """Share of eager forward time in the deformable convolutions, at the largest batch."""
    dtypes = (
        {"fp32": torch.float32, "bf16": torch.bfloat16} if device.type == "cuda" else {"fp32": torch.float32}
    )
    return {
        label: deformable_share(network, lambda: torch.randn(shape, device=device), device, dtype)
        for label, dtype in dtypes.items()
    }


def _probe(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The fixed input every variant's error is measured on (seeded, so the same for all)."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(shape, generator=generator).to(device)


def _release(device: torch.device) -> None:
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _render(report: dict[str, Any]) -> None:
    peaks = ", ".join(f"{p} {v / 1e12:.3g} TFLOP/s" for p, v in report["peak_flops"].items())
    print(f"measured peak (dense matrix product): {peaks}")
    for name, flops in report["flops_per_clip"].items():
        shares = report["deformable_conv_share"].get(name, {})
        dcn = ", ".join(f"{p} {100 * s:.1f}%" for p, s in shares.items() if s is not None) or "none"
        print(f"{name}: {flops / 1e9:.3g} GFLOPs per clip; time in deformable convolutions (eager): {dcn}")
    print()
    print_table(
        ("preset", "variant", "batch", "ms/batch", "clips/s", "x eager-fp32", "rel.err", "TFLOP/s", "util %"),
        [
            (
                r["preset"],
                r["variant"],
                r["batch"],
                r["ms_per_batch"],
                r["clips_per_s"],
                r["speedup_vs_eager_fp32"],
                f"{r['rel_error_vs_fp32']:.1e}",
                r["achieved_tflops"],
                100 * r["utilisation"],
            )
            for r in report["rows"]
        ],
    )
    for item in report["unavailable"]:
        print(f"{item['preset']} {item['variant']}: {item['reason']}")
