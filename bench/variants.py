"""The ways to run a preset that ``bench model`` compares: eager, channels-last, reduced precision,
``torch.compile``, TorchScript, ONNX Runtime (CPU, CUDA, TensorRT providers).

Each variant turns an eval-mode network into a callable from a (B, T, 3, H, W) float32 input on
the device to heatmaps, or raises ``Unavailable`` with the reason (no GPU, no provider), which
the report prints instead of a number. GPU-only variants exist on every machine, so a CPU run
says what it could not measure.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.timing import NOT_AVAILABLE, Unavailable
from tdmi.model.export import INPUT_NAME, OUTPUT_NAME, export_model
from tdmi.model.presets import ModelPreset

__all__ = ["VARIANTS", "Runner", "Variant", "build_runner", "default_variants"]

Runner = Callable[[torch.Tensor], torch.Tensor]
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # the matrix precision whose peak its utilisation is measured against
    build: Callable[[nn.Module, ModelPreset, torch.device, Path], Runner]
    gpu_only: bool = False
    cpu_default: bool = True  # part of a CPU run unless --variants says otherwise


def _eager(
    precision: str, channels_last: bool
) -> Callable[[nn.Module, ModelPreset, torch.device, Path], Runner]:
    dtype = _DTYPES[precision]

    def build(network: nn.Module, preset: ModelPreset, device: torch.device, cache: Path) -> Runner:
        if channels_last:
            network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it

        @torch.inference_mode()
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                return network(x)

        return run

    return build


def _compiled(precision: str) -> Callable[[nn.Module, ModelPreset, torch.device, Path], Runner]:
    """``torch.compile`` with static shapes: one graph per batch size, as the service's buckets."""
    eager = _eager(precision, channels_last=False)

    def build(network: nn.Module, preset: ModelPreset, device: torch.device, cache: Path) -> Runner:
        if precision != "fp32":
            network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it
        compiled = torch.compile(network, dynamic=False)
        return eager(compiled, preset, device, cache)  # type: ignore[arg-type]

    return build


def _torchscript(network: nn.Module, preset: ModelPreset, device: torch.device, cache: Path) -> Runner:
    frozen = torch.jit.freeze(torch.jit.script(network))
    return torch.inference_mode()(frozen)


def _onnxruntime(provider: str) -> Callable[[nn.Module, ModelPreset, torch.device, Path], Runner]:
    def build(network: nn.Module, preset: ModelPreset, device: torch.device, cache: Path) -> Runner:
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            raise Unavailable(f"{NOT_AVAILABLE}: ONNX Runtime has no {provider}")
        path = cache / f"{preset.name}.onnx"
        if not path.exists():
            export_model(network.cpu(), torch.zeros(preset.input_shape(2)), path, "onnx")
            network.to(device)
        options: dict[str, object] = {}
        if provider == "TensorrtExecutionProvider":
            options = {
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
            }
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = torch.get_num_threads()  # as many CPU threads as torch's variants
        session = ort.InferenceSession(str(path), settings, providers=[(provider, options)])
        if device.type == "cpu":
            return lambda x: torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
        return _bound(session, preset, device)

    return build


def _bound(session: object, preset: ModelPreset, device: torch.device) -> Runner:
    """Run a GPU session on tensors already on the device (I/O binding: no host round trip)."""
    index = device.index or 0
    joints, (hh, hw) = preset.layout.num_joints, preset.heatmap_size

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty((x.shape[0], joints, hh, hw), device=device)
        binding = session.io_binding()  # type: ignore[attr-defined]
        binding.bind_input(INPUT_NAME, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, tuple(out.shape), out.data_ptr())
        session.run_with_iobinding(binding)  # type: ignore[attr-defined]
        return out

    return run


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("eager-fp32", "fp32", _eager("fp32", channels_last=False)),
        Variant("eager-fp32-cl", "fp32", _eager("fp32", channels_last=True)),
        Variant("eager-bf16-cl", "bf16", _eager("bf16", channels_last=True), gpu_only=True),
        Variant("eager-fp16-cl", "fp16", _eager("fp16", channels_last=True), gpu_only=True),
        Variant("compile-fp32", "fp32", _compiled("fp32"), cpu_default=False),
        Variant("compile-bf16-cl", "bf16", _compiled("bf16"), gpu_only=True),
        Variant("torchscript-fp32", "fp32", _torchscript),
        Variant("onnxruntime-cpu", "fp32", _onnxruntime("CPUExecutionProvider")),
        Variant("onnxruntime-cuda", "fp32", _onnxruntime("CUDAExecutionProvider"), gpu_only=True),
        Variant("onnxruntime-tensorrt", "fp16", _onnxruntime("TensorrtExecutionProvider"), gpu_only=True),
    )
}


def default_variants(device: torch.device) -> list[str]:
    """Everything on a GPU; on a CPU all but ``torch.compile`` (a minute of compiling per batch)."""
    if device.type == "cuda":
        return [n for n in VARIANTS if n != "onnxruntime-cpu"]
    return [n for n, v in VARIANTS.items() if v.cpu_default or v.gpu_only]


def build_runner(variant: Variant, network: nn.Module, preset: ModelPreset, device: torch.device) -> Runner:
    """The variant's runner, or ``Unavailable`` when it cannot run on ``device``."""
    if variant.gpu_only and device.type != "cuda":
        raise Unavailable(f"{NOT_AVAILABLE}: needs a CUDA GPU")
    return variant.build(network, preset, device, _cache_dir())


_CACHE: list[Path] = []


def _cache_dir() -> Path:
    """One temporary folder per process for ONNX files and TensorRT engines."""
    if not _CACHE:
        _CACHE.append(Path(tempfile.mkdtemp(prefix="tdmi-bench-")))
    return _CACHE[0]
