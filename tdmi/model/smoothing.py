"""One Euro smoothing of keypoints along tracks (Casiez, Roussel and Vogel, CHI 2012).

A per-frame model's joints shake from frame to frame. A fixed low-pass filter would steady them
but drag behind fast motion; the One Euro filter adapts: its cutoff frequency is
``min_cutoff + beta * speed``, low (steady) when a joint is still and high (responsive) when it
moves. The speed is itself low-passed at ``d_cutoff``. Here each joint's 2-D position is one
signal and its speed the length of its velocity in pixels per second, so ``beta`` is in
1 / pixel; scores pass unchanged.

The service applies it to what a session answers (``Settings.smoothing``, a stream's config) and
``tdmi eval posetrack --one-euro`` to prediction files; it lives in the model library so that
both can. ``PoseSmoother`` keeps one filter per track. A track missing from a frame is forgotten, so a
person who comes back (or an id reused) starts afresh instead of being pulled towards where it
was. Time is in seconds; a sample whose time does not move forward restarts its track's filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["OneEuroFilter", "OneEuroParams", "PoseSmoother"]


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float  # Hz: the cutoff when still; lower is steadier and laggier
    beta: float  # 1 / pixel: how fast the cutoff rises with speed; 0 is a fixed low-pass
    d_cutoff: float = 1.0  # Hz: the speed estimate's cutoff (the paper's default)

    def __post_init__(self) -> None:
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0):
            raise ValueError(f"One Euro needs min_cutoff > 0, d_cutoff > 0 and beta >= 0, got {self}")


def _smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """The exponential filter's weight of the new sample for a cutoff (Hz) and a step (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One track's joints: (J, 2) positions in, (J, 2) filtered positions out."""

    def __init__(self, params: OneEuroParams):
        self.params = params
        self._t: float | None = None
        self._x: np.ndarray | None = None  # filtered positions
        self._dx = np.zeros(0)  # filtered velocities, pixels per second

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t or self._x.shape != points.shape:
            self._t, self._x, self._dx = t, points.copy(), np.zeros_like(points)
            return points.copy()
        dt = t - self._t
        a_d = _smoothing_factor(self.params.d_cutoff, dt)
        self._dx = self._dx + a_d * ((points - self._x) / dt - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)
        a = _smoothing_factor(self.params.min_cutoff + self.params.beta * speed, dt)
        self._x = self._x + a * (points - self._x)
        self._t = t
        return self._x.copy()


class PoseSmoother:
    """One filter per track id; a track not in a frame is forgotten."""

    def __init__(self, params: OneEuroParams):
        self.params = params
        self._filters: dict[int, OneEuroFilter] = {}

    def __call__(self, track_ids: Sequence[int] | np.ndarray, keypoints: np.ndarray, t: float) -> np.ndarray:
        """(N, J, 3) x, y, score of one frame's people -> the same with x, y smoothed (a new array)."""
        ids = [int(i) for i in track_ids]
        self._filters = {i: self._filters.get(i) or OneEuroFilter(self.params) for i in ids}
        out = np.array(keypoints, dtype=np.float64, copy=True)
        for row, track_id in enumerate(ids):
            out[row, :, :2] = self._filters[track_id](out[row, :, :2], t)
        return out.astype(np.asarray(keypoints).dtype, copy=False)

    @property
    def tracks(self) -> set[int]:
        return set(self._filters)
