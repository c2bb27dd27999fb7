"""The models an API node may accept requests for: those its live workers serve."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from tdmi.model.joints import LAYOUTS
from tdmi.model.presets import ModelPreset
from tdmi.protocol import WorkerPublic
from tdmi.service.inference.runtime import ModelInfo, UnknownModelError
from tdmi.service.weights.catalogue import WeightsStore
from tdmi.service.weights.resolve import resolve_model

__all__ = ["ClusterCatalog"]


class ClusterCatalog:
    """Refreshed from the workers' reports; before any worker is up, the node's own model list
    stands in, so that jobs can be queued for workers that are still starting."""

    def __init__(self, configured: list[str], store: WeightsStore):
        # described without their files: the checkpoints are the workers'
        self._store = store
        presets = [resolve_model(spec, store, need_file=False)[0] for spec in configured]
        self._configured = [preset.name for preset in presets]
        self._models: dict[str, ModelInfo] = {preset.name: ModelInfo(preset, None) for preset in presets}

    @property
    def models(self) -> Mapping[str, ModelInfo]:
        return self._models

    def update(self, workers: list[WorkerPublic]) -> None:
        served = {
            m.name: ModelInfo(
                _labelled(resolve_model(m.name, self._store, need_file=False)[0], m.joints),
                Path(m.checkpoint) if m.checkpoint else None,
            )
            for w in workers
            for m in w.models
        }
        if served:
            self._models = served

    def get(self, name: str | None) -> ModelInfo:
        if name is None:
            name = next((n for n in self._configured if n in self._models), next(iter(self._models)))
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModelError(
                f"model {name!r} is not served by any worker; served: {', '.join(self._models)}"
            ) from None


def _labelled(preset: ModelPreset, joints: str | None) -> ModelPreset:
    """``preset`` with the joint layout its worker labels keypoints with (a checkpoint may declare
    one other than the preset's, e.g. an MMPose COCO file in a PoseTrack preset)."""
    if joints is None or joints == preset.layout.name or joints not in LAYOUTS:
        return preset
    return dataclasses.replace(preset, layout=LAYOUTS[joints])
