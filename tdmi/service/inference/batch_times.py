"""What a batch costs on this device: a running estimate of the model's seconds per batch bucket.

The runner feeds it the measured model time of every batch (an exponential moving average per
bucket: the size the model runs, padded or exact, see ``run_sizes``); the batcher's latency budget
asks it what a batch of n clips will take, so that a batch carrying live frames stays short
enough to answer in time. A bucket's estimate is also bounded by its measured neighbours (a bigger batch
never costs more per clip, a smaller one never more in total): a bucket not measured yet gets an
estimate, and one measured high once (a first run that compiled, a busy moment) is not kept out
of use for good once its neighbours are measured.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

__all__ = ["BatchTimes"]


class BatchTimes:
    """Seconds per bucket; written by the device thread, read by the event loop (one lock)."""

    def __init__(self, buckets: Sequence[int], smoothing: float = 0.25):
        if not buckets or not 0 < smoothing <= 1:
            raise ValueError("buckets must not be empty and smoothing must be in (0, 1]")
        self.buckets = sorted(buckets)
        self.smoothing = smoothing
        self._seconds: dict[int, float] = {}
        self._lock = threading.Lock()

    def bucket(self, clips: int) -> int:
        """The bucket a batch of ``clips`` runs padded to (the largest for oversized batches)."""
        return next((b for b in self.buckets if b >= clips), self.buckets[-1])

    def observe(self, clips: int, seconds: float) -> None:
        """One measured model run of ``clips`` clips (runs past the largest bucket are not kept:
        they are several buckets in a row)."""
        if clips < 1 or clips > self.buckets[-1]:
            return
        size = self.bucket(clips)
        with self._lock:
            old = self._seconds.get(size)
            self._seconds[size] = seconds if old is None else old + self.smoothing * (seconds - old)

    def estimate(self, clips: int) -> float | None:
        """Expected model seconds of a batch of ``clips`` (at most the largest bucket); None
        before anything was measured."""
        size = self.bucket(clips)
        with self._lock:
            known = dict(self._seconds)
        bounds = [known[size]] if size in known else []
        smaller = [b for b in known if b < size]
        if smaller:  # at most the smaller bucket's seconds per clip
            nearest = max(smaller)
            bounds.append(known[nearest] * size / nearest)
        larger = [b for b in known if b > size]
        if larger:  # at most what the bigger batch costs
            bounds.append(known[min(larger)])
        return min(bounds, default=None)
