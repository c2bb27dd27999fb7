"""The machine a report was measured on, and its measured peak matrix rate.

The peak is measured, not taken from a data sheet: a large dense matrix product in the same run,
so that utilisation (the model's achieved FLOP/s over the peak) compares two numbers measured on
the same device under the same conditions (clocks, other processes, thread count).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from bench.timing import median_seconds
from tdmi.model.presets import ModelPreset

__all__ = [
    "add_server_model_arguments",
    "cpu_model",
    "describe_device",
    "device_from_name",
    "measure_peak_flops",
    "parse_model_spec",
    "server_model",
    "set_threads",
    "software_versions",
]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_from_name(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a GPU this machine lacks is a one-line error, never a fallback."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(
                f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})"
            )
        if (device.index or 0) >= torch.cuda.device_count():
            raise SystemExit(
                f"--device {name}: no such CUDA device (this machine has {torch.cuda.device_count()})"
            )
    return device


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every measuring command shares: CPU threads and JSON output."""
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def add_server_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--detector`` of a command that starts a server on the CPU."""
    parser.add_argument("--model", help="NAME[=CHECKPOINT]; default: the demo tdmi-tiny")
    parser.add_argument(
        "--detector", help="detector spec or catalogue name (default: the service's, a pulled one else hog)"
    )


def server_model(args: argparse.Namespace) -> tuple[str, str]:
    """The model spec and the detector spec that ``add_server_model_arguments``' flags name: the
    demo checkpoint on the CPU and the service's own detector where they are left out."""
    from tdmi.service.config import Settings
    from tdmi.service.weights.resolve import resolve_detector, weights_store

    spec = args.model or default_model_spec(torch.device("cpu"))
    return spec, resolve_detector(args.detector, weights_store(Settings()))


def default_model_spec(device: torch.device) -> str:
    """The paper's large model on a GPU, the demo checkpoint on a CPU."""
    from tdmi.service.config import DEMO_CHECKPOINT

    return "tdmi-w48-384x288" if device.type == "cuda" else f"tdmi-tiny={DEMO_CHECKPOINT}"


def parse_model_spec(spec: str) -> tuple[ModelPreset, Path | None]:
    """``NAME`` or ``NAME=CHECKPOINT`` (presets, files or pulled catalogue entries) -> (preset,
    checkpoint), with the weights cache of this environment's settings: the server a benchmark
    starts reads the same environment."""
    from tdmi.service.config import Settings
    from tdmi.service.weights.resolve import resolve_model, weights_store

    return resolve_model(spec, weights_store(Settings()))


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch's operators in this process (None: torch's default).

    On a shared CPU, torch's OpenMP threads wait for each other at every operator: one of them
    descheduled stalls the rest (2 threads on a busy 2-core machine ran a forward pass 40x
    slower than 1 thread), so a busy machine is measured with ``--threads 1``.
    """
    if threads is not None:
        if threads < 1:
            raise SystemExit(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor string elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with its core count and torch's thread count."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    return f"{cpu_model()} ({os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads)"


def software_versions() -> dict[str, str]:
    """Versions of everything that changes the numbers."""
    import cv2
    import onnxruntime

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
    }
    if torch.cuda.is_available():
        versions["cuda"] = str(torch.version.cuda)
        versions["cudnn"] = str(torch.backends.cudnn.version())
    return versions


def measure_peak_flops(
    device: torch.device, precision: str, size: int | None = None, repeats: int = 5
) -> float:
    """FLOP/s of a dense ``size``x``size`` matrix product (2 n^3 FLOPs), the best of ``repeats``
    (the peak is what the device can do; on a shared machine a median would understate it).

    fp32 on a GPU is measured with TF32 off (the true fp32 rate); bf16/fp16 on tensor cores.
    """
    n = size or (8192 if device.type == "cuda" else 1024)
    dtype = _DTYPES[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = min(
            median_seconds(lambda _: torch.mm(a, b), lambda: None, device, 1, warmup=0 if i else 2)
            for i in range(repeats)
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2.0 * n**3 / seconds
