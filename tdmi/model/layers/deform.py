"""Modulated deformable convolution layer whose offsets and scalars come from a guide feature."""

from __future__ import annotations

import math

import torch
from torch import nn

from tdmi.model.layers.blocks import BasicBlock
from tdmi.model.ops import deform_conv2d

__all__ = ["ModulatedDeformConv2d"]


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 whose offsets and modulation scalars are predicted from ``guide``.

    The predictor is ``offset_blocks`` residual blocks then a 3x3 conv (TDMI's Eq. 3); with no
    blocks it is the conv alone (the light form, whose state-dict keys older checkpoints hold).
    The final conv starts at zero: offsets 0 and scalars sigmoid(0) = 0.5 at first, so training
    starts from a plain (half-weighted) convolution, as in the DCNv2 paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        deform_groups: int = 1,
        offset_blocks: int = 0,
    ):
        super().__init__()
        self.padding = padding
        self.taps = kernel_size * kernel_size
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.offset_blocks = nn.Sequential(
            *[BasicBlock(in_channels, in_channels) for _ in range(offset_blocks)]
        )
        self.offset_mask = nn.Conv2d(in_channels, 3 * deform_groups * self.taps, 3, 1, 1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)  # type: ignore[arg-type]  # the conv has a bias

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        predicted = self.offset_mask(self.offset_blocks(guide))
        split = 2 * self.deform_groups * self.taps
        offset = predicted[:, :split]
        mask = torch.sigmoid(predicted[:, split:])
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)
