"""Modulated deformable convolution (DCNv2) in plain PyTorch.

A drop-in for ``torchvision.ops.deform_conv2d``: same arguments, the same offset layout
(``(dy, dx)`` per kernel tap, taps in row-major order, grouped by offset group), the same mask
layout, and bilinear sampling that reads zeros outside the image. Sampling uses
``grid_sample``, so it runs on any device, has gradients for input, offset, mask, weight and
bias, scripts with TorchScript and exports to ONNX (opset >= 16, GridSample).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ["deform_conv2d"]

IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return value[0], value[1]


def _tap_grid(
    offset: torch.Tensor,
    kernel: Tuple[int, int],
    stride: Tuple[int, int],
    padding: Tuple[int, int],
    dilation: Tuple[int, int],
    in_size: Tuple[int, int],
) -> torch.Tensor:
    """Sampling grid (B*og, K*Ho, Wo, 2) in ``grid_sample``'s normalised (x, y) coordinates."""
    b, _, ho, wo = offset.shape
    kh, kw = kernel
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)
    dtype, device = offset.dtype, offset.device
    out_y = torch.arange(ho, dtype=dtype, device=device) * stride[0] - padding[0]
    out_x = torch.arange(wo, dtype=dtype, device=device) * stride[1] - padding[1]
    tap_y = (torch.arange(kh, dtype=dtype, device=device) * dilation[0]).repeat_interleave(kw)
    tap_x = (torch.arange(kw, dtype=dtype, device=device) * dilation[1]).repeat(kh)
    base_y = tap_y.view(taps, 1, 1) + out_y.view(1, ho, 1)
    base_x = tap_x.view(taps, 1, 1) + out_x.view(1, 1, wo)
    offset = offset.view(b, groups, taps, 2, ho, wo)
    y = base_y + offset[:, :, :, 0]
    x = base_x + offset[:, :, :, 1]
    # pixel centre p maps to (2p + 1) / size - 1 with align_corners=False; this also holds for
    # size 1, where the align_corners=True formula divides by zero
    grid = torch.stack(((2 * x + 1) / in_size[1] - 1, (2 * y + 1) / in_size[0] - 1), dim=-1)
    return grid.view(b * groups, taps * ho, wo, 2)


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Deformable convolution v2 (v1 when ``mask`` is None), torchvision's signature.

    Shapes: input (B, Cin, H, W); offset (B, 2*og*kh*kw, Ho, Wo); mask (B, og*kh*kw, Ho, Wo);
    weight (Cout, Cin/groups, kh, kw). ``groups`` and the offset groups ``og`` follow from the
    shapes, as in torchvision.
    """
    stride_, padding_, dilation_ = _pair(stride), _pair(padding), _pair(dilation)
    b, in_ch, h, w = input.shape
    out_ch, group_in_ch, kh, kw = weight.shape
    groups = in_ch // group_in_ch
    taps = kh * kw
    offset_groups = offset.shape[1] // (2 * taps)
    ho = (h + 2 * padding_[0] - dilation_[0] * (kh - 1) - 1) // stride_[0] + 1
    wo = (w + 2 * padding_[1] - dilation_[1] * (kw - 1) - 1) // stride_[1] + 1
    if offset.shape[1] != 2 * offset_groups * taps or in_ch % offset_groups != 0:
        raise ValueError(
            f"offset has {offset.shape[1]} channels; expected a multiple of 2*kh*kw={2 * taps}"
            f" whose group count divides the {in_ch} input channels"
        )
    if offset.shape[2] != ho or offset.shape[3] != wo:
        raise ValueError(f"offset is {offset.shape[2]}x{offset.shape[3]}; output is {ho}x{wo}")

    grid = _tap_grid(offset.to(input.dtype), (kh, kw), stride_, padding_, dilation_, (h, w))
    grouped = input.reshape(b * offset_groups, in_ch // offset_groups, h, w)
    sampled = F.grid_sample(grouped, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.view(b, offset_groups, in_ch // offset_groups, taps, ho, wo)
    if mask is not None:
        sampled = sampled * mask.to(input.dtype).view(b, offset_groups, 1, taps, ho, wo)
    columns = sampled.reshape(b, groups, group_in_ch * taps, ho * wo)
    kernels = weight.reshape(groups, out_ch // groups, group_in_ch * taps)
    out = torch.matmul(kernels, columns).reshape(b, out_ch, ho, wo)
    if bias is not None:
        out = out + bias.view(1, out_ch, 1, 1)
    return out
