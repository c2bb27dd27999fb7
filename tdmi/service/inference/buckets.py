"""Batch buckets: the few batch sizes a model ever sees, so each is warmed once and none compiles late."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

__all__ = ["bucket_chunks", "bucket_sizes", "run_sizes"]


def bucket_sizes(max_batch: int) -> list[int]:
    """Batch sizes the model ever sees: powers of two below ``max_batch``, and ``max_batch``."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch:
        sizes.append(sizes[-1] * 2)
    return sorted({*sizes, max_batch})


def run_sizes(max_batch: int, fixed_shapes: bool) -> list[int]:
    """The batch sizes a runner runs: the buckets on a runtime that specialises on shapes, every
    size up to ``max_batch`` on one that does not (no padding, see ``Backend.fixed_shapes``)."""
    return bucket_sizes(max_batch) if fixed_shapes else list(range(1, max_batch + 1))


def bucket_chunks(
    tensors: Sequence[torch.Tensor], buckets: Sequence[int]
) -> Iterator[tuple[list[torch.Tensor], int]]:
    """Slices of ``tensors`` (same length, sliced together) of at most the largest bucket,
    zero-padded up to a bucket size, each with its real (unpadded) size."""
    step = buckets[-1]
    for begin in range(0, len(tensors[0]), step):
        parts = [t[begin : begin + step] for t in tensors]
        real = len(parts[0])
        size = next(b for b in buckets if b >= real)
        if size > real:
            parts = [torch.cat((p, p.new_zeros((size - real, *p.shape[1:])))) for p in parts]
        yield parts, real
