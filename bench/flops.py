"""FLOPs of one clip through a preset, counted by PyTorch's own operator-level counter.

``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of convolutions
and matrix products (``aten.convolution``, ``aten.mm``/``bmm``/``addmm``); the deformable
convolution in ``tdmi.model.ops`` is a ``grid_sample`` (not counted: no multiply-adds of weights)
followed by a ``matmul`` (counted). Elementwise work (BatchNorm, ReLU, additions) is not counted,
as is usual for FLOP figures of vision models. The count runs on the ``meta`` device, so even
the W48 presets cost no arithmetic.
"""

from __future__ import annotations

from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from tdmi.model.presets import get_preset

__all__ = ["flops_per_clip"]


@cache
def flops_per_clip(preset_name: str) -> int:
    """FLOPs of one clip (batch 1): 2 x multiply-adds of every convolution and matrix product."""
    preset = get_preset(preset_name)
    with torch.device("meta"):
        network = preset.build().eval()
        example = torch.empty(preset.input_shape(1))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(example)
    return int(counter.get_total_flops())
