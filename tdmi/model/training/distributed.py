"""Multi-process training under ``torchrun``: process group, device, and small collectives.

``torchrun --nproc_per_node N`` (or a multi-node launch) sets RANK, WORLD_SIZE and LOCAL_RANK;
a plain ``python`` run has none of them and trains as a world of one, through the same code.
CUDA processes talk over NCCL, CPU ones over gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "all_gather_objects",
    "any_rank",
    "barrier",
    "init_distributed",
    "mean_across",
    "resolve_device",
]

# validation runs between barriers; give it longer than the default collective timeout
_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank in the world and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device; under torchrun CUDA means cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return device


def init_distributed(device_name: str = "auto") -> DistributedContext:
    """Join the process group described by torchrun's environment (or stand alone without one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world_size, timeout=_TIMEOUT
        )
    return DistributedContext(rank, world_size, local_rank, device)


def barrier(ctx: DistributedContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def mean_across(ctx: DistributedContext, values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of a tensor over all processes (the tensor itself in a world of one)."""
    if not ctx.distributed:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size


def any_rank(ctx: DistributedContext, flag: bool) -> bool:
    """True on every process when any process says True (so all stop at the same step)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(ctx: DistributedContext, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
