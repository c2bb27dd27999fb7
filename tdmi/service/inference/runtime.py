"""The models a service instance serves: each loaded, wrapped in its backend, warmed, batched.

All models share one device thread, so the accelerator runs one batch at a time and the event
loop never blocks on arithmetic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from tdmi.model.checkpoint import read_checkpoint
from tdmi.model.presets import ModelPreset, load_checkpoint, with_checkpoint_joints
from tdmi.protocol import SkeletonPublic
from tdmi.service.config import Settings
from tdmi.service.inference.backends import OrtOptions, ProviderUnavailableError, make_backend
from tdmi.service.inference.batcher import Batcher, LatencyBudget
from tdmi.service.inference.engine import InferenceEngine
from tdmi.service.inference.heap import HeapTrim
from tdmi.service.inference.runner import ModelRunner
from tdmi.service.inference.threads import apply_cpu_threads, named_threads
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.weights.resolve import resolve_model, weights_store

__all__ = [
    "DeviceUnavailableError",
    "InferenceRuntime",
    "ModelCatalog",
    "ModelInfo",
    "ModelRuntime",
    "UnknownModelError",
]

log = logging.getLogger("tdmi.inference")

_RUNTIME_TITLES = {"torch": "PyTorch", "torchscript": "TorchScript", "onnxruntime": "ONNX Runtime"}


class DeviceUnavailableError(RuntimeError):
    """The configured accelerator is missing; the service must not fall back silently."""


class UnknownModelError(ValueError):
    """A request named a model this instance has not loaded."""


@dataclass
class ModelInfo:
    """What a client may know of a model: enough to validate requests and describe it."""

    preset: ModelPreset
    checkpoint: Path | None

    @property
    def name(self) -> str:
        return self.preset.name

    def skeleton(self) -> SkeletonPublic:
        layout = self.preset.layout
        return SkeletonPublic(
            layout=layout.name,
            joints=list(layout.joints),
            edges=list(layout.skeleton),
            flip_pairs=list(layout.flip_pairs),
        )


@dataclass
class ModelRuntime(ModelInfo):
    """A loaded model with the engine that batches its work."""

    engine: InferenceEngine


class ModelCatalog(Protocol):
    """The models requests may name: loaded here (embedded) or on the workers (scale-out)."""

    @property
    def models(self) -> Mapping[str, ModelInfo]: ...

    def get(self, name: str | None) -> ModelInfo:
        """The named model, or the default one for None; raises ``UnknownModelError``."""
        ...


class InferenceRuntime:
    def __init__(self, settings: Settings, metrics: ServiceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ModelRuntime] = {}
        self.device_thread = named_threads("tdmi-device")
        self.threads = 1  # the model's CPU threads, set at start
        self._heap_trim: asyncio.Task[None] | None = None

    @property
    def default_model(self) -> str:
        return next(iter(self.models))

    def get(self, name: str | None) -> ModelRuntime:
        if name is None:
            name = self.default_model
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModelError(
                f"model {name!r} is not loaded; loaded: {', '.join(self.models)}"
            ) from None

    async def start(self) -> None:
        """Load, warm every batch bucket, then start batching; raises if the device is unusable."""
        settings = self.settings
        if settings.device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {settings.device!r} requested but CUDA is not available")
        device = torch.device(settings.device)
        self.threads = apply_cpu_threads(settings.cpu_threads)
        loop = asyncio.get_running_loop()
        store = weights_store(settings)
        for spec in settings.models:
            preset, checkpoint = resolve_model(spec, store)
            runner = await loop.run_in_executor(self.device_thread, self._load, preset, checkpoint, device)
            preset = runner.preset  # with the joint layout the checkpoint declares
            budget_ms = settings.latency_budget_ms
            estimate = runner.model_times.estimate
            budget = None if budget_ms is None else LatencyBudget(budget_ms / 1000, estimate)
            batcher = Batcher(settings.max_batch, settings.max_delay_ms, settings.queue_frames, budget)
            engine = InferenceEngine(runner, batcher, self.device_thread, self.metrics)
            engine.start()
            self.models[preset.name] = ModelRuntime(preset, checkpoint, engine)
            log.info(
                "model %s: %s%s on %s (backend %s), %d CPU threads, %s",
                preset.name,
                _RUNTIME_TITLES[settings.model_backend],
                "" if settings.precision == "fp32" else f" {settings.precision}",
                device,
                settings.backend,
                self.threads,
                f"checkpoint {checkpoint.name}" if checkpoint else "untrained weights",
            )
            log.debug("model %s: batch buckets %s", preset.name, runner.buckets)
        if settings.heap_trim_s > 0:
            trim = HeapTrim(self.batches_run, settings.heap_trim_s, self.device_thread)
            self._heap_trim = asyncio.create_task(trim.run(), name="heap-trim")

    def _load(self, preset: ModelPreset, checkpoint: Path | None, device: torch.device) -> ModelRunner:
        network = preset.build()
        if checkpoint is not None:
            loaded = read_checkpoint(checkpoint)
            preset = with_checkpoint_joints(preset, loaded)
            load_checkpoint(network, preset, loaded)
        network.eval()
        weights_id = f"{checkpoint.resolve()}:{checkpoint.stat().st_mtime_ns}" if checkpoint else "untrained"
        try:
            backend = make_backend(
                self.settings.model_backend,
                network,
                preset,
                device,
                self.settings.precision,
                self.settings.data_dir / "onnx",
                weights_id,
                threads=self.threads,
                compile=self.settings.torch_compile,
                cuda_graphs=self.settings.cuda_graphs,
                ort=OrtOptions(self.settings.ort_memory_arena, self.settings.ort_spinning),
            )
        except ProviderUnavailableError as exc:
            raise DeviceUnavailableError(str(exc)) from exc
        runner = ModelRunner(
            preset,
            backend,
            device,
            self.settings.max_batch,
            self.metrics.observe_stage,
            feature_reuse=self.settings.feature_reuse and preset.multi_frame,  # raises unless backend torch
        )
        runner.warm_up()
        return runner

    def batches_run(self) -> int:
        """Batches the models have taken so far: how busy the process has been."""
        return sum(model.engine.batches for model in self.models.values())

    def queue_depths(self) -> dict[str, int]:
        """Frames waiting for a batch, by model."""
        return {name: model.engine.queued() for name, model in self.models.items()}

    async def stop(self) -> None:
        if self._heap_trim is not None:
            self._heap_trim.cancel()
        for runtime in self.models.values():
            await runtime.engine.stop()
        self.device_thread.shutdown(wait=False, cancel_futures=True)
