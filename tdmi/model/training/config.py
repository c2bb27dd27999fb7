"""The training configuration: one typed object read from YAML, every key checked.

A run is described by a YAML file of four sections (``model``, ``loss``, ``data``, ``train``)
and optional ``--set section.key=value`` overrides (values parsed as YAML). A key that no
section knows, or a value of the wrong type, ends in one ``ConfigError`` line that names the
key, so a typo never silently falls back to a default. Relative paths are relative to the
working directory the command runs in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tdmi.model.data.transforms import AugmentConfig
from tdmi.model.mutual_info import MutualInfoConfig
from tdmi.model.tdmi import TDMIConfig

__all__ = [
    "ConfigError",
    "DataSection",
    "LossSection",
    "ModelSection",
    "TDMIOptions",
    "TrainConfig",
    "TrainSection",
    "apply_overrides",
    "load_config",
]


class ConfigError(ValueError):
    """A training configuration that cannot be used as written."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TDMIOptions(_Section):
    """Changes to a TDMI preset's architecture (the ablation switches); unset keys keep the preset's."""

    offset_blocks: int | None = Field(default=None, ge=0)  # Eq. 3: residual blocks; 0: one conv
    tde_stages: tuple[int, ...] | None = None  # backbone stages (1..4) feeding the TDE
    stage_fusion: Literal["progressive", "concat"] | None = None
    deform: bool | None = None  # DCN on/off
    rdm: bool | None = None  # representation disentanglement on/off

    def apply(self, cfg: TDMIConfig) -> TDMIConfig:
        """The preset's config with these changes (checked by ``TDMIConfig`` itself)."""
        return dataclasses.replace(cfg, **self.model_dump(exclude_none=True))

    @model_validator(mode="after")
    def _valid(self) -> TDMIOptions:
        self.apply(TDMIConfig())  # raises ValueError with the reason (e.g. a stage outside 1..4)
        return self


class ModelSection(_Section):
    """Which network to train and where its starting weights come from."""

    name: str
    init: Path | None = None  # official HRNet file (backbone of TDMI presets) or our checkpoint
    freeze_backbone: bool = False  # TDMI presets only: keep the HRNet backbone as initialised
    tdmi: TDMIOptions | None = None  # TDMI presets only: architecture switches (ablations)


class LossSection(_Section):
    """TDMI's objective: heatmap MSE + alpha * L_MI (single-frame presets use heatmap MSE only)."""

    alpha: float = Field(default=1.0, ge=0)
    mutual_info: MutualInfoConfig = MutualInfoConfig()


class DataSection(_Section):
    """A PoseTrack-format data set (PoseTrack 17/18/21 or ``tdmi synth`` output)."""

    root: Path  # holds the images/... paths named in the annotation files
    train_annotations: Path | None = None  # default: root/annotations/train
    val_annotations: Path | None = None  # default: root/annotations/val
    sigma: float | None = Field(default=None, gt=0)  # default: 2 at heatmap width 48, 3 at width 72
    augment: AugmentConfig | None = AugmentConfig()  # null: train on plain crops
    num_workers: int = Field(default=2, ge=0)
    val_boxes: str = "gt"  # "gt" or a detections file (COCO result format)
    static_clips: bool = False  # every clip is its key frame repeated (a control without motion)
    val_score_threshold: float = Field(default=0.2, ge=0)

    @property
    def train_dir(self) -> Path:
        return self.train_annotations or self.root / "annotations" / "train"

    @property
    def val_dir(self) -> Path:
        return self.val_annotations or self.root / "annotations" / "val"


class TrainSection(_Section):
    """Optimiser, schedule, precision, validation and stopping."""

    out_dir: Path
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=32, ge=1)  # per process
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    milestones: tuple[int, ...] = (6, 12, 18)  # epochs at which lr is multiplied by gamma
    gamma: float = Field(default=0.1, gt=0)
    grad_clip: float | None = Field(default=None, gt=0)  # max global gradient norm
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16 on CUDA only
    channels_last: bool = True  # CUDA only
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    log_every: int = Field(default=20, ge=1)  # optimizer steps per metrics row
    val_every: int = Field(default=1, ge=0)  # epochs between validations; 0: never
    val_batch_size: int = Field(default=64, ge=1)
    val_flip: bool = False
    max_steps: int | None = Field(default=None, ge=1)  # stop after this many optimizer steps in all
    max_minutes: float | None = Field(default=None, gt=0)  # stop (and save) when this run has taken this long
    progress: bool = True  # tqdm bar on rank 0

    @model_validator(mode="after")
    def _milestones_increase(self) -> TrainSection:
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must increase strictly, got {list(self.milestones)}")
        return self


class TrainConfig(_Section):
    """A whole training run."""

    model: ModelSection
    loss: LossSection = LossSection()
    data: DataSection
    train: TrainSection

    @model_validator(mode="after")
    def _mi_terms_need_rdm(self) -> TrainConfig:
        options = self.model.tdmi
        no_rdm = options is not None and options.rdm is False
        if no_rdm and self.loss.alpha > 0 and self.loss.mutual_info.uses_noisy:
            raise ValueError(
                "model.tdmi.rdm is false, so Mu = Mn = M: set loss.mutual_info.useful_noisy and"
                " motion_useful to 0"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (paths as strings): for YAML and for checkpoints' metadata."""
        return self.model_dump(mode="json")


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``section.key=value`` strings applied to a raw config dict; values are parsed as YAML."""
    out = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        try:
            node[leaf] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.problem})") from None
    return out


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML config, apply overrides, and validate it into a ``TrainConfig``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(str(exc))})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return validate_config(apply_overrides(raw, overrides), source=str(path))


def validate_config(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a raw dict; the first problem becomes one readable ``ConfigError`` line."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = [str(part) for part in first["loc"]]
        where = ".".join(loc) or "(top level)"
        if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            known = _known_keys(loc[:-1])
            message = "unknown key" + (f" (known: {', '.join(known)})" if known else "")
        else:
            message = _first_line(first["msg"])
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {where}: {message}{more}") from None


def _known_keys(loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` in ``TrainConfig`` (empty when it has none)."""
    node: Any = TrainConfig
    for part in loc:
        fields = _fields_of(node)
        if part not in fields:
            return []
        node = fields[part]
    return sorted(_fields_of(node))


def _fields_of(cls: Any) -> dict[str, Any]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return {name: _bare_type(f.annotation) for name, f in cls.model_fields.items()}
    if dataclasses.is_dataclass(cls):
        return {f.name: f.type for f in dataclasses.fields(cls)}
    return {}


def _bare_type(annotation: Any) -> Any:
    """``X | None`` -> X, so optional sections can be walked too."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
