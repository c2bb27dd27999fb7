"""Catalogue names where the service takes a model or a detector: resolved to pulled files only.

``--model hrnet-w48-384x288-posetrack18`` serves that file under its catalogue name, with its
joint layout; ``--model tdmi-w48-384x288=hrnet-w48-384x288-posetrack18`` starts a TDMI preset
from it. ``--detector yolox-m-humanart`` runs that pulled ONNX file, and with no detector
configured the first pulled catalogue detector is used, else HOG; the entry's ``layout`` (yolox:
raw head outputs, mmdeploy: ``dets`` and ``labels``) and ``input_size`` are passed on as
``onnx-LAYOUT@HxW:PATH``.
Nothing here downloads: a name that is not pulled fails with the one command that would fetch it,
and a node's start-up check names every entry it lacks at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tdmi.model.joints import get_layout
from tdmi.model.presets import PRESETS, ModelPreset, UnknownPresetError, get_preset
from tdmi.service.config import Settings
from tdmi.service.detection.base import onnx_spec
from tdmi.service.weights.catalogue import CatalogueEntry, NotPulledError, WeightsStore

__all__ = ["check_pulled", "resolve_detector", "resolve_model", "weights_store"]

_PASS_THROUGH = ("hog", "none")


def weights_store(settings: Settings) -> WeightsStore:
    return WeightsStore(settings.weights_dir, settings.weights_catalogue)


def _pose_entry(store: WeightsStore, name: str) -> CatalogueEntry | None:
    entry = store.catalogue.entries.get(name)
    return entry if entry is not None and entry.kind == "pose" else None


def _with_entry_joints(preset: ModelPreset, entry: CatalogueEntry) -> ModelPreset:
    return dataclasses.replace(preset, layout=get_layout(entry.joints)) if entry.joints else preset


def resolve_model(spec: str, store: WeightsStore, need_file: bool = True) -> tuple[ModelPreset, Path | None]:
    """``NAME`` or ``NAME=CHECKPOINT`` -> (preset, checkpoint path).

    NAME is a preset or a pose entry of the catalogue (served under the entry's name, with its
    joints); CHECKPOINT a file or a pose entry. ``need_file=False`` describes the model without
    looking for files (an API node of a cluster: the files are the workers').
    """
    name, _, weights = (part.strip() for part in spec.partition("="))
    entry = _pose_entry(store, name)
    if entry is not None:
        if weights:
            raise ValueError(f"{name} is a catalogue entry with its own weights; drop '={weights}'")
        assert entry.preset is not None  # the entry's validator requires it of pose entries
        preset = dataclasses.replace(
            _with_entry_joints(get_preset(entry.preset), entry), name=entry.name, description=entry.title
        )
        return preset, store.require(name)[1] if need_file else None
    if name not in PRESETS:
        poses = [n for n, e in store.catalogue.entries.items() if e.kind == "pose"]
        raise UnknownPresetError(
            f"unknown model {name!r}; presets: {', '.join(PRESETS)}; catalogue: {', '.join(poses)}"
        )
    preset = get_preset(name)
    if not weights:
        return preset, None
    weights_entry = _pose_entry(store, weights)
    if weights_entry is not None:
        preset = _with_entry_joints(preset, weights_entry)
        return preset, store.require(weights)[1] if need_file else None
    checkpoint = Path(weights)
    if need_file and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} for model {preset.name}: no such file")
    return preset, checkpoint


def resolve_detector(spec: str | None, store: WeightsStore) -> str:
    """A detector spec for ``make_detector``: a catalogue name becomes ``onnx-LAYOUT@HxW:<pulled
    file>`` (its output layout named, not guessed; a file with dynamic height and width runs at the
    size it was published for); unset means the first pulled catalogue detector, else
    ``hog``."""
    if spec is None:
        pulled = (e for e in store.catalogue.entries.values() if e.kind == "detector" and store.is_pulled(e))
        first = next(pulled, None)
        return onnx_spec(store.path(first), first.layout, first.input_size) if first is not None else "hog"
    entry = store.catalogue.entries.get(spec.strip())
    if spec.strip() in _PASS_THROUGH or entry is None or entry.kind != "detector":
        return spec
    return onnx_spec(store.require(entry.name)[1], entry.layout, entry.input_size)


def check_pulled(settings: Settings, loads_models: bool) -> None:
    """Every model and the detector of a node resolved before it starts; the catalogue entries
    not pulled are named together in one ``NotPulledError``, so that one pull fixes the start-up
    (``loads_models=False``: an API node of a cluster only describes its models)."""
    store = weights_store(settings)
    checks: list[Callable[[], object]] = [
        partial(resolve_model, spec, store, need_file=loads_models) for spec in settings.models
    ]
    if loads_models:
        checks.append(partial(resolve_detector, settings.detector, store))
    missing: list[str] = []
    for check in checks:
        try:
            check()
        except NotPulledError as exc:
            missing += exc.names
    if missing:
        raise store.not_pulled(missing)
