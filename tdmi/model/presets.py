"""Named model presets and ``build_model``: the two-line way to a ready network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tdmi.model.checkpoint import Checkpoint, LoadReport, load_weights, read_checkpoint
from tdmi.model.hrnet import HRNetConfig, PoseHighResolutionNet
from tdmi.model.joints import COCO_17, POSETRACK_17, JointLayout, get_layout
from tdmi.model.tdmi import TDMI, TDMIConfig

__all__ = [
    "PRESETS",
    "ModelPreset",
    "UnknownPresetError",
    "build_model",
    "get_preset",
    "load_checkpoint",
    "with_checkpoint_joints",
]


@dataclass(frozen=True)
class ModelPreset:
    """A network configuration with the input it expects and the joints it predicts."""

    name: str
    config: HRNetConfig | TDMIConfig
    input_size: tuple[int, int]  # (height, width)
    layout: JointLayout
    description: str

    @property
    def multi_frame(self) -> bool:
        return isinstance(self.config, TDMIConfig)

    @property
    def num_frames(self) -> int:
        return self.config.num_frames if isinstance(self.config, TDMIConfig) else 1

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // 4, self.input_size[1] // 4

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        h, w = self.input_size
        return (batch, self.num_frames, 3, h, w) if self.multi_frame else (batch, 3, h, w)

    def build(self) -> nn.Module:
        if isinstance(self.config, TDMIConfig):
            return TDMI(self.config)
        return PoseHighResolutionNet(self.config)


W32 = HRNetConfig(width=32)
W48 = HRNetConfig(width=48)
TINY = HRNetConfig(width=16, stem_width=32, layer1_blocks=1, stage_modules=(1, 1, 1), branch_blocks=1)

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset("hrnet-w32-256x192", W32, (256, 192), COCO_17, "official single-frame HRNet-W32 (COCO)"),
        ModelPreset("hrnet-w48-384x288", W48, (384, 288), COCO_17, "official single-frame HRNet-W48 (COCO)"),
        ModelPreset("tdmi-w48-384x288", TDMIConfig(W48), (384, 288), POSETRACK_17, "TDMI as in the paper"),
        ModelPreset(
            "tdmi-st-w48-384x288",
            TDMIConfig(W48, spatiotemporal=True),
            (384, 288),
            POSETRACK_17,
            "TDMI-ST: the clip's spatiotemporal feature instead of the key frame's",
        ),
        ModelPreset("tdmi-w32-256x192", TDMIConfig(W32), (256, 192), POSETRACK_17, "TDMI on HRNet-W32"),
        ModelPreset(
            "tdmi-tiny",
            # the light Eq. 3 (one conv predicts the DCN offsets): the demo checkpoint's layout
            TDMIConfig(TINY, motion_blocks=(1, 1, 1, 1), fusion_blocks=1, offset_blocks=0),
            (128, 96),
            POSETRACK_17,
            "small TDMI for laptops, tests and the demo",
        ),
        ModelPreset("hrnet-tiny", TINY, (128, 96), POSETRACK_17, "tdmi-tiny's backbone alone, single-frame"),
    )
}


class UnknownPresetError(ValueError):
    """A model name that is not one of the presets."""


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}") from None


def load_checkpoint(model: nn.Module, preset: ModelPreset, checkpoint: str | Path | Checkpoint) -> LoadReport:
    """Load our checkpoint, an official HRNet or an MMPose file (into the backbone for TDMI presets)."""
    multi = preset.multi_frame
    return load_weights(
        model,
        checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint),
        preset.name,
        backbone="backbone" if multi else None,
        head="head" if multi else None,
    )


def with_checkpoint_joints(preset: ModelPreset, ckpt: Checkpoint) -> ModelPreset:
    """``preset`` labelled with the joint layout ``ckpt`` declares (MMPose 1.x files name their
    dataset), or unchanged when it declares none."""
    return dataclasses.replace(preset, layout=get_layout(ckpt.joints)) if ckpt.joints else preset


def build_model(name: str, checkpoint: str | Path | None = None) -> nn.Module:
    """Build a preset, optionally load weights, and return it in eval mode.

    Multi-frame presets take (B, T, 3, H, W), single-frame ones (B, 3, H, W); both return
    heatmaps (B, J, H/4, W/4). Input: RGB, ImageNet-normalised (see ``tdmi.model.inputs``).
    """
    preset = get_preset(name)
    model = preset.build()
    if checkpoint is not None:
        load_checkpoint(model, preset, checkpoint)
    return model.eval()
