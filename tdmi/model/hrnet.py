"""HRNet pose network with the module and parameter names of the official HRNet pose code.

Keeping the official names lets the published checkpoints (``pose_hrnet_w32_256x192.pth``,
``pose_hrnet_w48_384x288.pth``) and the ImageNet-pretrained backbones load key for key. The
layout follows the official network: a stride-4 stem, ``layer1`` (Bottleneck blocks), and stages
2-4 of parallel branches joined by ``transition{1,2,3}`` and exchanged by fuse layers that
upsample by nearest neighbour. Only the highest-resolution branch leaves stage 4.

``forward_features`` returns the four stage features at 1/4 resolution that the temporal
difference encoder reads; ``feature_info`` declares their channels and strides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import nn

from tdmi.model.layers.blocks import BN_MOMENTUM, BasicBlock, Bottleneck, conv_bn

__all__ = ["FeatureInfo", "HRNetConfig", "HighResolutionModule", "PoseHighResolutionNet"]


@dataclass(frozen=True)
class HRNetConfig:
    """An HRNet generated from a few numbers.

    Branch ``i`` of stages 2-4 has ``width * 2**i`` channels. The official pose networks are
    ``HRNetConfig(width=32)`` and ``HRNetConfig(width=48)``; smaller values make tiny models.
    """

    width: int = 32
    num_joints: int = 17
    stem_width: int = 64
    layer1_blocks: int = 4
    stage_modules: tuple[int, int, int] = (1, 4, 3)
    branch_blocks: int = 4

    def branch_channels(self, num_branches: int) -> List[int]:
        return [self.width * 2**i for i in range(num_branches)]

    @property
    def layer1_channels(self) -> int:
        return self.stem_width * Bottleneck.expansion


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and stride (relative to the input) of one feature returned by the backbone."""

    name: str
    channels: int
    stride: int


def _downsample_chain(in_ch: int, out_ch: int, steps: int, final_relu: bool) -> nn.Sequential:
    """``steps`` stride-2 3x3 convs; the last changes ``in_ch`` to ``out_ch``."""
    layers = []
    for k in range(steps):
        last = k == steps - 1
        target = out_ch if last else in_ch
        layers.append(conv_bn(in_ch, target, 3, stride=2, relu=final_relu or not last))
    return nn.Sequential(*layers)


class Transition(nn.ModuleList):
    """Adapts one stage's branches to the next: entry ``i`` (Identity when the channels match)
    maps branch ``i``; a new, lower-resolution branch is made from the last one."""

    def __init__(self, previous: List[int], current: List[int]):
        layers: list[nn.Module] = []
        for i, ch in enumerate(current):
            if i < len(previous):
                layers.append(conv_bn(previous[i], ch, 3) if previous[i] != ch else nn.Identity())
            else:
                # the official code nests even a single downsampling conv in its own Sequential
                steps = i + 1 - len(previous)
                layers.append(_downsample_chain(previous[-1], ch, steps, final_relu=True))
        super().__init__(layers)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        outs: List[torch.Tensor] = []
        for i, layer in enumerate(self):
            outs.append(layer(xs[i] if i < len(xs) else xs[-1]))
        return outs


class FuseLayers(nn.ModuleList):
    """Output ``i`` is relu(sum over branches ``j`` of branch j resampled to branch i)."""

    def __init__(self, channels: List[int], outputs: int):
        rows = []
        for i in range(outputs):
            row: list[nn.Module] = []
            for j, ch in enumerate(channels):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(ch, channels[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    row.append(_downsample_chain(ch, channels[i], i - j, final_relu=False))
            rows.append(nn.ModuleList(row))
        super().__init__(rows)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        fused: List[torch.Tensor] = []
        for i, row in enumerate(self):
            # summed in branch order, as the official code does, so results match it exactly
            y = xs[i]
            for j, layer in enumerate(row):
                term = _crop_to(layer(xs[j]), xs[i])
                y = term if j == 0 else y + term
            fused.append(torch.relu(y))
        return fused


def _crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop an upsampled map to ``ref``'s size (only differs for inputs not divisible by 32)."""
    return x[:, :, : ref.shape[2], : ref.shape[3]]


class HighResolutionModule(nn.Module):
    """Parallel residual branches followed by an all-to-all exchange (the fuse layers)."""

    def __init__(self, channels: List[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels
        )
        outputs = 0 if self.num_branches == 1 else (self.num_branches if multi_scale_output else 1)
        self.fuse_layers = FuseLayers(channels, outputs)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        outs: List[torch.Tensor] = []
        for i, branch in enumerate(self.branches):
            outs.append(branch(xs[i]))
        if self.num_branches == 1:
            return outs
        return self.fuse_layers(outs)


class Stage(nn.Sequential):
    """High-resolution modules in sequence, passing the list of branch features along."""

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        for module in self:
            xs = module(xs)
        return xs


class PoseHighResolutionNet(nn.Module):
    """Single-frame HRNet pose estimator: image (B, 3, H, W) -> heatmaps (B, J, H/4, W/4)."""

    def __init__(self, cfg: HRNetConfig = HRNetConfig(), with_head: bool = True):
        super().__init__()
        self.cfg = cfg
        stem = cfg.stem_width
        self.conv1 = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        blocks: list[nn.Module] = [Bottleneck(stem, stem)]
        blocks += [Bottleneck(cfg.layer1_channels, stem) for _ in range(cfg.layer1_blocks - 1)]
        self.layer1 = nn.Sequential(*blocks)

        previous = [cfg.layer1_channels]
        for stage, num_modules in enumerate(cfg.stage_modules, start=2):
            channels = cfg.branch_channels(stage)
            setattr(self, f"transition{stage - 1}", Transition(previous, channels))
            last_stage = stage == 4
            modules = [
                HighResolutionModule(
                    channels,
                    cfg.branch_blocks,
                    multi_scale_output=not (last_stage and m == num_modules - 1),
                )
                for m in range(num_modules)
            ]
            setattr(self, f"stage{stage}", Stage(*modules))
            previous = channels
        # a backbone inside a multi-frame model has its own head and leaves this one out
        self.final_layer = nn.Conv2d(cfg.width, cfg.num_joints, 1, 1, 0) if with_head else nn.Identity()
        self.feature_info = [
            FeatureInfo("layer1", cfg.layer1_channels, 4),
            FeatureInfo("stage2", cfg.width, 4),
            FeatureInfo("stage3", cfg.width, 4),
            FeatureInfo("stage4", cfg.width, 4),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The four stage features at 1/4 resolution: layer1, then branch 0 of stages 2-4."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        features = [x]
        xs = [x]
        xs = self.stage2(self.transition1(xs))
        features.append(xs[0])
        xs = self.stage3(self.transition2(xs))
        features.append(xs[0])
        xs = self.stage4(self.transition3(xs))
        features.append(xs[0])
        return features

    def forward_head(self, feature: torch.Tensor) -> torch.Tensor:
        return self.final_layer(feature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])
