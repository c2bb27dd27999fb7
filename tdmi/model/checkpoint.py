"""Reading and writing weights: our checkpoints and the official HRNet files, in one place.

Files are read with ``torch.load(weights_only=True)``, so loading never runs pickled code (plain
numeric numpy arrays, which MMPose 1.x keeps in its metadata, are allowed). A state dict may come
bare, wrapped in ``{'state_dict': ...}`` or prefixed with ``module.`` (DDP);
``num_batches_tracked`` buffers may be missing. MMPose's top-down HRNet files (0.x: ``backbone.``
and ``keypoint_head.final_layer.``; 1.x: ``head.final_layer.``) are renamed to the official
HRNet keys as they are read. Every mismatch ends in one ``CheckpointError`` line that names the
keys at fault.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tdmi.model.joints import COCO_17, POSETRACK_17

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "LoadReport",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "tdmi-checkpoint"
VERSION = 1
# keys of ImageNet-pretrained HRNet files that a pose network has no place for: the classifier,
# and the lower-resolution outputs of the last stage-4 module (pose HRNet keeps only branch 0)
_IMAGENET_ONLY = (
    "incre_modules.", "downsamp_modules.", "classifier.", "final_layer.0.", "final_layer.1.",
    "stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3.",
)  # fmt: skip
# MMPose's names of the top-down heatmap head's 1x1 conv (0.x, then 1.x); the backbone is "backbone."
_MMPOSE_HEADS = ("keypoint_head.final_layer.", "head.final_layer.")
# the numpy pieces a plain numeric array is pickled with (MMPose 1.x metadata holds such arrays)
_NUMERIC_DTYPES = (
    "Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float16", "Float32", "Float64",
)  # fmt: skip
_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    *(getattr(np.dtypes, f"{name}DType") for name in _NUMERIC_DTYPES),
    np.empty(0).__reduce__()[0],  # numpy's _reconstruct, under whichever module this numpy has
    np.float64(0).__reduce__()[0],  # numpy's scalar
]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


@dataclass
class Checkpoint:
    """A state dict and, for our own files, the preset it was made for."""

    state_dict: dict[str, torch.Tensor]
    preset: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    joints: str | None = None  # the joint layout the file declares (MMPose 1.x names its dataset)

    @property
    def is_hrnet(self) -> bool:
        """An (official) single-frame HRNet state dict, pose or ImageNet."""
        return "layer1.0.conv1.weight" in self.state_dict and "conv1.weight" in self.state_dict

    @property
    def is_imagenet(self) -> bool:
        return "classifier.weight" in self.state_dict


@dataclass
class LoadReport:
    """What a load did: keys loaded, keys in the file that were ignored, model keys left as built."""

    loaded: int
    ignored: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded"]
        if self.ignored:
            parts.append(f"{len(self.ignored)} ignored ({_preview(self.ignored)})")
        if self.initialised:
            parts.append(
                f"{len(self.initialised)} left at their initial values ({_preview(self.initialised)})"
            )
        return "; ".join(parts)


def _preview(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file safely and unwrap it to a flat state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with path.open("rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive; files from before PyTorch 1.6 start with a pickle opcode
    if magic[:2] != b"PK" and magic[:1] != b"\x80":
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file")
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path}: holds pickled Python objects besides tensors; refusing to unpickle it"
                " (re-save it as a plain state dict)"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
    meta: dict[str, Any] = {}
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CheckpointError(f"{path}: holds no state dict of named tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if meta.get("format") == FORMAT:
        preset = meta.get("preset")
        return Checkpoint(state, preset if isinstance(preset, str) else None, meta)
    if "backbone.conv1.weight" in state and any(k.startswith(_MMPOSE_HEADS) for k in state):
        return Checkpoint(_official_names(state), None, meta, _declared_joints(meta))
    return Checkpoint(state, None, meta)


def _official_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An MMPose top-down HRNet state dict under the official HRNet names; keys of other parts
    are kept as they are, so that loading names them."""

    def rename(key: str) -> str:
        for head in _MMPOSE_HEADS:
            if key.startswith(head):
                return "final_layer." + key.removeprefix(head)
        return key.removeprefix("backbone.")

    return {rename(k): v for k, v in state.items()}


def _declared_joints(meta: dict[str, Any]) -> str | None:
    """The joint layout named by MMPose 1.x metadata (``meta.dataset_meta.dataset_name``), if any."""
    inner = meta.get("meta")
    dataset_meta = inner.get("dataset_meta") if isinstance(inner, dict) else None
    name = dataset_meta.get("dataset_name") if isinstance(dataset_meta, dict) else None
    if not isinstance(name, str):
        return None
    if name.startswith("posetrack"):
        return POSETRACK_17.name
    return COCO_17.name if name == "coco" else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def save_checkpoint(model: nn.Module, path: str | Path, preset: str, **meta: Any) -> None:
    """Write our checkpoint format: the state dict with the preset it belongs to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "preset": preset,
        **meta,
        "state_dict": model.state_dict(),
    }
    torch.save(payload, path)


def load_weights(
    model: nn.Module, ckpt: Checkpoint, preset: str, backbone: str | None = None, head: str | None = None
) -> LoadReport:
    """Load ``ckpt`` into ``model`` (built from ``preset``), or an HRNet file into its backbone.

    ``backbone`` names the submodule (``"backbone"`` for TDMI) that an HRNet file initialises
    when the model itself is not an HRNet; ``head`` names the model's 3x3 heatmap conv, which the
    file's 1x1 ``final_layer`` then initialises (as the centre of the kernel) when the shapes fit.
    """
    into_backbone = backbone is not None and ckpt.is_hrnet
    # our own single-frame HRNet checkpoints may initialise a TDMI backbone (shapes are checked)
    if ckpt.preset is not None and ckpt.preset != preset and not into_backbone:
        raise CheckpointError(f"checkpoint was made for preset {ckpt.preset!r}, not {preset!r}")
    state = ckpt.state_dict
    if into_backbone and backbone is not None:
        target = model.get_submodule(backbone)
        # the file's pose head has no place in a backbone without one
        ignorable = ("final_layer.", *_IMAGENET_ONLY)
        report = _load_matching(
            target, state, optional_missing=(), ignorable=ignorable, what=f"{preset} backbone"
        )
        report.initialised = [k for k in model.state_dict() if not k.startswith(backbone + ".")]
        if head is not None and _init_head_from_final_layer(model.get_submodule(head), state):
            report.ignored = [k for k in report.ignored if not k.startswith("final_layer.")]
            report.initialised = [k for k in report.initialised if not k.startswith(head + ".")]
            report.loaded += 2
        return report
    if ckpt.is_imagenet:
        return _load_matching(
            model, state, optional_missing=("final_layer.",), ignorable=_IMAGENET_ONLY, what=preset
        )
    return _load_matching(model, state, optional_missing=(), ignorable=(), what=preset)


def _init_head_from_final_layer(head: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Copy a 1x1 ``final_layer`` into the centre of a 3x3 head conv (zeros around); False if unfit."""
    weight, bias = state.get("final_layer.weight"), state.get("final_layer.bias")
    if not isinstance(head, nn.Conv2d) or weight is None or bias is None or head.bias is None:
        return False
    out_ch, in_ch, kh, kw = head.weight.shape
    if tuple(weight.shape) != (out_ch, in_ch, 1, 1) or kh % 2 == 0 or kw % 2 == 0:
        return False
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, :, kh // 2, kw // 2] = weight[:, :, 0, 0]
        head.bias.copy_(bias)
    return True


def _load_matching(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    optional_missing: tuple[str, ...],
    ignorable: tuple[str, ...],
    what: str,
) -> LoadReport:
    """Load keys of ``state`` by name; model keys under ``optional_missing`` may stay as built,
    file keys under ``ignorable`` are reported and skipped, anything else that differs fails."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    initialised = [k for k in missing if k.startswith(optional_missing)]
    missing = [k for k in missing if k not in initialised]
    extra = [k for k in state if k not in own]
    ignored = [k for k in extra if k.startswith(ignorable)]
    unexpected = [k for k in extra if k not in ignored]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_preview(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} keys of the wrong shape ({_preview(wrong_shape)})")
    if problems:
        raise CheckpointError(f"checkpoint does not fit {what}: " + "; ".join(problems))
    selected = {k: state[k] for k in own if k in state}
    model.load_state_dict(selected, strict=False)
    return LoadReport(loaded=len(selected), ignored=ignored, initialised=initialised)
