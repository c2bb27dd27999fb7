"""Inference backends: one small class per runtime behind the ``Backend`` protocol.

Pre- and post-processing (crops, decoding) are written once in the model runner; a backend only maps
a (B, T, 3, H, W) or (B, 3, H, W) float32 batch on the device to float32 heatmaps on the device.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from tdmi.model.export import INPUT_NAME, export_model
from tdmi.model.presets import ModelPreset

__all__ = [
    "Backend",
    "BackendKind",
    "CudaGraphs",
    "OnnxRuntimeBackend",
    "OrtOptions",
    "Precision",
    "ProviderUnavailableError",
    "TorchBackend",
    "TorchScriptBackend",
    "make_backend",
]

log = logging.getLogger("tdmi.inference")

BackendKind = Literal["torch", "torchscript", "onnxruntime"]
Precision = Literal["fp32", "fp16", "bf16"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ProviderUnavailableError(RuntimeError):
    """A configured accelerator or ONNX Runtime provider is missing: the service is not ready."""


class Backend(Protocol):
    name: str
    # the runtime specialises on each input shape (compiles, captures, times its kernels once per
    # shape): the runner then pads every batch to a few bucket sizes, each warmed once; otherwise
    # it runs the batch's exact size, since padding is wasted arithmetic (3 clips padded to 4 cost
    # a CPU 20-30 % more)
    fixed_shapes: bool

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """Eager PyTorch. On a GPU: fp16/bf16 cast the weights (a CPU stays in fp32); weights and
    activations are channels-last, the layout tensor cores read without transposes; cuDNN times
    its convolution algorithms once per input shape, and the runner's fixed batch buckets, each
    run at warm-up, make that one search per bucket. ``channels_last`` None: on a GPU only.

    ``compile``: ``torch.compile`` with static shapes (one graph per bucket, built at warm-up);
    ``cuda_graphs`` (GPU only): each bucket's forward pass is captured once and replayed."""

    name = "torch"
    specialises_on_shapes = False  # TorchScript's profiling executor does, eager torch does not

    def __init__(
        self,
        network: nn.Module,
        device: torch.device,
        precision: Precision = "fp32",
        channels_last: bool | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ):
        if cuda_graphs and device.type != "cuda":
            raise ValueError("cuda_graphs needs a CUDA device")
        self.dtype = _DTYPES[precision] if device.type == "cuda" else torch.float32
        self.fixed_shapes = device.type == "cuda" or compile or self.specialises_on_shapes
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # process-wide: the service runs fixed shapes only
        network = network.eval().to(device=device, dtype=self.dtype)
        if device.type == "cuda" if channels_last is None else channels_last:
            # nn.Module.to's type stubs omit memory_format, which it takes at run time
            network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module = self._prepare(network)
        self._forward = torch.compile(self.module, dynamic=False) if compile else self.module
        self._graphs: CudaGraphs | None = CudaGraphs(self._run) if cuda_graphs else None

    def _prepare(self, network: nn.Module) -> nn.Module:
        return network

    def _run(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(inputs.to(self.dtype)).float()

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._graphs is not None:
            return self._graphs(inputs)
        return self._run(inputs)


class CudaGraphs:
    """One captured CUDA graph per input shape: the first call of a shape captures (after two
    runs on a side stream, as capture requires), later calls copy the input in and replay."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]):
        self.forward = forward
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        shape = tuple(inputs.shape)
        if shape not in self._graphs:
            static_in = inputs.clone()
            side = torch.cuda.Stream(inputs.device)
            side.wait_stream(torch.cuda.current_stream(inputs.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.forward(static_in)
            torch.cuda.current_stream(inputs.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.forward(static_in)
            self._graphs[shape] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[shape]
        static_in.copy_(inputs)
        graph.replay()
        return static_out.clone()  # the next replay overwrites the static output


class TorchScriptBackend(TorchBackend):
    """The scripted, frozen network: no Python in the forward pass."""

    name = "torchscript"
    specialises_on_shapes = True

    def _prepare(self, network: nn.Module) -> nn.Module:
        return torch.jit.freeze(torch.jit.script(network))


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime's session options that are settings: why each default, in ``Settings``'s
    ``ort_memory_arena`` and ``ort_spinning``."""

    memory_arena: bool = True
    spinning: bool = False


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU or CUDA provider; the ONNX file is exported once and cached."""

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: Path,
        device: torch.device,
        threads: int | None = None,
        options: OrtOptions = OrtOptions(),
    ):
        import onnxruntime as ort

        wanted = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        available = ort.get_available_providers()
        if wanted not in available:
            raise ProviderUnavailableError(
                f"ONNX Runtime provider {wanted} is not available (have {', '.join(available)}); "
                "install onnxruntime-gpu for CUDA"
            )
        provider_options = {"device_id": device.index or 0} if device.type == "cuda" else {}
        self.device = device
        self.fixed_shapes = device.type == "cuda"  # cuDNN's algorithm search runs per shape
        session_options = ort.SessionOptions()
        if threads is not None:
            session_options.intra_op_num_threads = threads
        session_options.enable_cpu_mem_arena = options.memory_arena
        session_options.add_session_config_entry(
            "session.intra_op.allow_spinning", str(int(options.spinning))
        )
        providers = [(wanted, provider_options)]
        self.session = ort.InferenceSession(str(onnx_path), session_options, providers=providers)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        (heatmaps,) = self.session.run(None, {INPUT_NAME: inputs.float().cpu().numpy()})
        return torch.from_numpy(np.asarray(heatmaps)).to(self.device)


def make_backend(
    kind: BackendKind,
    network: nn.Module,
    preset: ModelPreset,
    device: torch.device,
    precision: Precision,
    cache_dir: Path,
    weights_id: str,
    *,
    threads: int | None = None,
    compile: bool = False,
    cuda_graphs: bool = False,
    ort: OrtOptions = OrtOptions(),
) -> Backend:
    """Build the backend ``kind`` for ``network``; ONNX files are cached under ``cache_dir``.

    ``threads``: ONNX Runtime's intra-op threads (torch's are set process-wide, see
    ``tdmi.service.inference.threads``); ``compile`` and ``cuda_graphs``: backend torch only;
    ``ort``: backend onnxruntime only."""
    if (compile or cuda_graphs) and kind != "torch":
        raise ValueError(f"torch_compile and cuda_graphs need backend torch, not {kind}")
    if kind == "torch":
        return TorchBackend(network, device, precision, compile=compile, cuda_graphs=cuda_graphs)
    if kind == "torchscript":
        return TorchScriptBackend(network, device, precision)
    if kind == "onnxruntime":
        if precision != "fp32":
            raise ValueError("the onnxruntime backend runs fp32; use torch or torchscript for fp16/bf16")
        digest = hashlib.sha256(f"{preset.name}:{weights_id}".encode()).hexdigest()[:16]
        path = cache_dir / f"{preset.name}-{digest}.onnx"
        if not path.exists():
            log.info("exporting %s to ONNX once (cached in %s)", preset.name, cache_dir)
            started = time.perf_counter()
            tmp = path.with_suffix(".tmp.onnx")
            export_model(network.cpu().eval(), torch.zeros(preset.input_shape(2)), tmp, "onnx")
            tmp.replace(path)
            log.info(
                "exported %s to ONNX in %.0f s: %s", preset.name, time.perf_counter() - started, path.name
            )
        return OnnxRuntimeBackend(path, device, threads, ort)
    raise ValueError(f"unknown backend {kind!r}; use torch, torchscript or onnxruntime")
