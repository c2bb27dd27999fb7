"""A person box that moves at a steady speed between measurements: a constant-velocity Kalman filter.

The state is the box's centre, width and height and their velocities per frame (8 numbers), as in
SORT and ByteTrack, which use the same motion model for pedestrians. The noise scales with the
box height, so a person far away (small) and one close by (large) are equally sure of themselves;
the factors are ByteTrack's published ones (1/20 of the height for positions, 1/160 for
velocities). A prediction without a measurement grows the uncertainty, so the first measurement
after a gap counts for more.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoxMotion", "centre_size", "corners"]

_POSITION_NOISE = 1.0 / 20.0  # of the box height, per frame
_VELOCITY_NOISE = 1.0 / 160.0
_MIN_SIZE = 1.0  # pixels: a box never shrinks to nothing while it coasts

_TRANSITION = np.eye(8)
_TRANSITION[:4, 4:] = np.eye(4)  # position += velocity, once per frame
_OBSERVE = np.eye(4, 8)
_OBSERVE_CENTRE = np.eye(2, 8)


def centre_size(box: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 -> centre x, centre y, width, height."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def corners(state: np.ndarray) -> np.ndarray:
    """centre x, centre y, width, height -> x1, y1, x2, y2."""
    cx, cy = state[0], state[1]
    w, h = max(float(state[2]), _MIN_SIZE), max(float(state[3]), _MIN_SIZE)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _size_noise(height: float, factor: float) -> np.ndarray:
    h = max(height, _MIN_SIZE)
    return np.array([factor * h, factor * h, factor * h, factor * h])


class BoxMotion:
    """One track's box under the constant-velocity model: ``predict`` once per frame, ``correct``
    with each measured box."""

    def __init__(self, box: np.ndarray):
        self.mean = np.concatenate([centre_size(box), np.zeros(4)])
        height = self.mean[3]
        spread = np.concatenate(
            [2 * _size_noise(height, _POSITION_NOISE), 10 * _size_noise(height, _VELOCITY_NOISE)]
        )
        self.covariance = np.diag(spread**2)

    @property
    def box(self) -> np.ndarray:
        """The current estimate as x1, y1, x2, y2."""
        return corners(self.mean)

    @property
    def velocity(self) -> np.ndarray:
        """Pixels per frame of the centre (x, y)."""
        return self.mean[4:6].copy()

    def predict(self) -> np.ndarray:
        """One frame ahead; returns the predicted box."""
        height = self.mean[3]
        noise = np.concatenate([_size_noise(height, _POSITION_NOISE), _size_noise(height, _VELOCITY_NOISE)])
        self.mean = _TRANSITION @ self.mean
        self.covariance = _TRANSITION @ self.covariance @ _TRANSITION.T + np.diag(noise**2)
        return self.box

    def correct(self, box: np.ndarray) -> np.ndarray:
        """Fold in a measured box; returns the corrected box."""
        return self._fold(centre_size(box), _OBSERVE)

    def correct_centre(self, centre: np.ndarray) -> np.ndarray:
        """Fold in a measured centre (x, y) alone, leaving the size to the box measurements;
        returns the corrected box."""
        return self._fold(np.asarray(centre, dtype=np.float64)[:2], _OBSERVE_CENTRE)

    def _fold(self, measured: np.ndarray, observe: np.ndarray) -> np.ndarray:
        noise = _size_noise(self.mean[3], _POSITION_NOISE)[: len(measured)]
        projected = observe @ self.covariance @ observe.T + np.diag(noise**2)
        gain = np.linalg.solve(projected, observe @ self.covariance).T
        self.mean = self.mean + gain @ (measured - observe @ self.mean)
        self.covariance = self.covariance - gain @ projected @ gain.T
        return self.box
