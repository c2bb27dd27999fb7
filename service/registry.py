"""The models a service instance has loaded, built from the ``NAME[=CHECKPOINT]`` settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model.presets import ModelPreset, build_model, get_preset

__all__ = ["DeviceUnavailableError", "LoadedModel", "ModelRegistry"]


class DeviceUnavailableError(RuntimeError):
    """The configured accelerator is missing; the service must not fall back silently."""


@dataclass
class LoadedModel:
    preset: ModelPreset
    network: nn.Module
    checkpoint: Path | None


class ModelRegistry:
    """Loads every configured model on the configured device."""

    def __init__(self, specs: list[str], device: str):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {device!r} requested but CUDA is not available")
        self.device = torch.device(device)
        self.models: dict[str, LoadedModel] = {}
        for spec in specs:
            name, _, path = spec.partition("=")
            preset = get_preset(name.strip())
            checkpoint = Path(path.strip()) if path.strip() else None
            network = build_model(preset.name, checkpoint).to(self.device)
            self.models[preset.name] = LoadedModel(preset, network, checkpoint)
