"""How much of a forward pass the deformable convolutions take: is the plain-PyTorch DCN a bottleneck?

Forward hooks around every ``ModulatedDeformConv2d`` synchronise the device and add up the time
spent inside them (offset sampling with ``grid_sample`` and the weight product); the share is
that time over the whole forward pass, timed with the same hooks in place. A fused GPU kernel
for the DCN can save at most this share.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from bench.timing import synchronize
from tdmi.model.layers.deform import ModulatedDeformConv2d

__all__ = ["deformable_share"]


def deformable_share(
    network: nn.Module,
    make_input: Callable[[], torch.Tensor],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    repeats: int = 3,
) -> float | None:
    """Median share (0..1) of forward time inside deformable convolutions; None if the network has none."""
    layers = [m for m in network.modules() if isinstance(m, ModulatedDeformConv2d)]
    if not layers:
        return None
    inside = [0.0]
    started: list[float] = []

    def before(module: nn.Module, args: object) -> None:
        synchronize(device)
        started.append(time.perf_counter())

    def after(module: nn.Module, args: object, output: object) -> None:
        synchronize(device)
        inside[0] += time.perf_counter() - started.pop()

    handles = [
        h for m in layers for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))
    ]
    shares = []
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            for i in range(repeats + 1):
                x = make_input()
                inside[0] = 0.0
                synchronize(device)
                start = time.perf_counter()
                network(x)
                synchronize(device)
                if i:  # the first pass warms up
                    shares.append(inside[0] / (time.perf_counter() - start))
    finally:
        for handle in handles:
            handle.remove()
    return sorted(shares)[len(shares) // 2]
