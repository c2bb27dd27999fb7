"""Synchronised timing: medians over repeats, warm-up excluded, fresh inputs, percentiles.

A measurement is the median of ``repeats`` calls after ``warmup`` calls that are not counted;
each call gets an input made fresh (outside the timed region) and the device is synchronised
before the clock starts and before it stops, so queued GPU work is never credited to the wrong
call.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

__all__ = ["NOT_AVAILABLE", "Unavailable", "median_seconds", "percentile", "synchronize", "timed_call"]

T = TypeVar("T")
NOT_AVAILABLE = "not available on this device"


class Unavailable(Exception):
    """A variant or stage that cannot run here (no GPU, no provider); the reason goes in the report."""


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU, whose calls return when done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[T], object],
    make_input: Callable[[], T],
    device: torch.device,
    repeats: int,
    warmup: int = 2,
) -> float:
    """Median wall time of ``fn(fresh input)`` over ``repeats`` calls after ``warmup`` uncounted ones."""
    times = [timed_call(fn, make_input(), device) for _ in range(warmup + repeats)]
    return statistics.median(times[warmup:])


def timed_call(fn: Callable[[T], object], x: T, device: torch.device) -> float:
    """Seconds of one ``fn(x)``, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn(x)
    synchronize(device)
    return time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
