"""Deterministic weights that depend only on each tensor's name and shape.

Used to compare our HRNet with the official implementation: the fixture generator filled the
official model with these values, and the tests fill ours the same way, so matching outputs
prove the two compute the same function with the same parameter names.
"""

from __future__ import annotations

import math
import zlib

import torch


def deterministic_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A well-scaled tensor for a state-dict entry, seeded by the entry's name."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.long)
    if leaf == "running_var":
        return torch.rand(shape, generator=gen) + 0.5
    if leaf == "running_mean":
        return torch.randn(shape, generator=gen) * 0.1
    if len(shape) == 1:  # BatchNorm weight/bias or conv/linear bias
        if leaf == "weight":
            return torch.rand(shape, generator=gen) * 0.5 + 0.5
        return torch.randn(shape, generator=gen) * 0.05
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)


def deterministic_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Fill every entry of a name -> shape mapping with `deterministic_tensor`."""
    return {name: deterministic_tensor(name, tuple(shape)) for name, shape in shapes.items()}


def deterministic_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A seeded standard-normal input batch."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter and buffer of ``module`` deterministic, non-degenerate values."""
    shapes = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    module.load_state_dict(deterministic_state_dict(shapes))
    return module
