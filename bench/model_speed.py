"""Clips per second of model presets at several batch sizes, eager PyTorch, one run.

    python -m bench.model_speed --models tdmi-tiny tdmi-w48-384x288 --batches 1 8 --device cpu [--json]

Fresh random inputs every repeat, warm-up excluded, device synchronised, median of repeats.
On CUDA it also times bf16 autocast with channels-last, TorchScript and ONNX Runtime (CUDA
provider) against eager fp32, and checks each against fp32 (relative error).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from model.export import export_model, relative_error
from model.presets import build_model, get_preset


def _median_seconds(
    fn: Callable[[torch.Tensor], object],
    make_input: Callable[[], torch.Tensor],
    repeats: int,
    device: torch.device,
) -> float:
    times = []
    for i in range(repeats + 2):
        x = make_input()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up calls
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _variants(name: str, device: torch.device, batch: int) -> dict[str, Callable[[torch.Tensor], object]]:
    net = build_model(name).to(device)
    variants: dict[str, Callable[[torch.Tensor], object]] = {"eager fp32": torch.no_grad()(net)}
    if device.type != "cuda":
        return variants
    fast = build_model(name).to(device).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return fast(x)

    variants["eager bf16 channels-last"] = bf16
    variants["torchscript fp32"] = torch.no_grad()(torch.jit.script(net))
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        path = Path(tempfile.mkdtemp()) / f"{name}.onnx"
        export_model(net, torch.randn(get_preset(name).input_shape(2)), path, "onnx")
        session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
        variants["onnxruntime cuda fp32"] = lambda x: session.run(None, {"input": x.cpu().numpy()})[0]
    return variants


def run(models: list[str], batches: list[int], device_name: str, repeats: int) -> list[dict]:
    device = torch.device(device_name)
    torch.backends.cudnn.benchmark = True
    rows = []
    for name in models:
        preset = get_preset(name)
        for batch in batches:
            variants = _variants(name, device, batch)
            probe = torch.randn(preset.input_shape(batch), device=device)
            reference = torch.as_tensor(variants["eager fp32"](probe)).float().cpu().numpy()
            base = None
            shape = preset.input_shape(batch)
            for label, fn in variants.items():
                seconds = _median_seconds(
                    fn, lambda shape=shape: torch.randn(shape, device=device), repeats, device
                )
                base = base or seconds
                out = torch.as_tensor(fn(probe)).float().cpu().numpy()
                rows.append(
                    {
                        "model": name,
                        "variant": label,
                        "batch": batch,
                        "ms_per_batch": seconds * 1e3,
                        "clips_per_s": batch / seconds,
                        "speedup_vs_eager_fp32": base / seconds,
                        "rel_error_vs_fp32": relative_error(out, reference),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tdmi-tiny"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = run(args.models, args.batches, args.device, args.repeats)
    if args.json:
        print(
            json.dumps(
                {"device": _device_name(args.device), "torch": torch.__version__, "rows": rows}, indent=1
            )
        )
        return
    print(f"device: {_device_name(args.device)}; torch {torch.__version__}")
    header = ("model", "variant", "batch", "ms/batch", "clips/s", "x eager", "rel.err")
    print("{:<20} {:<26} {:>5} {:>10} {:>9} {:>8} {:>9}".format(*header))
    for r in rows:
        print(
            f"{r['model']:<20} {r['variant']:<26} {r['batch']:>5} {r['ms_per_batch']:>10.1f}"
            f" {r['clips_per_s']:>9.2f} {r['speedup_vs_eager_fp32']:>8.2f} {r['rel_error_vs_fp32']:>9.1e}"
        )


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main()
