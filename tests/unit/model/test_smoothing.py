"""One Euro smoothing: steady signals stay, noise shrinks, steps are followed, lost tracks reset."""

from __future__ import annotations

import numpy as np
import pytest

from tdmi.model.smoothing import OneEuroFilter, OneEuroParams, PoseSmoother

FPS = 25.0


def run(filt: OneEuroFilter, signal: np.ndarray) -> np.ndarray:
    """(T, J, 2) positions through the filter at 25 fps."""
    return np.stack([filt(points, k / FPS) for k, points in enumerate(signal)])


def test_a_constant_signal_passes_unchanged() -> None:
    signal = np.tile(np.array([[120.0, 80.0], [5.0, -3.0]]), (50, 1, 1))
    out = run(OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.05)), signal)
    np.testing.assert_allclose(out, signal, atol=1e-9)


def test_noise_around_a_constant_shrinks() -> None:
    rng = np.random.default_rng(0)
    signal = 100.0 + rng.normal(0.0, 3.0, size=(400, 4, 2))
    out = run(OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0)), signal)
    assert out[50:].var() < 0.25 * signal[50:].var()
    assert abs(out[50:].mean() - 100.0) < 1.0


def test_a_step_is_followed_with_bounded_lag_and_faster_with_beta() -> None:
    signal = np.zeros((60, 1, 2))
    signal[10:, 0, 0] = 100.0  # a 100 px jump at frame 10

    def frames_to_reach_90(beta: float) -> int:
        out = run(OneEuroFilter(OneEuroParams(min_cutoff=0.5, beta=beta)), signal)
        return int(np.argmax(out[10:, 0, 0] >= 90.0))

    fast, slow = frames_to_reach_90(0.05), frames_to_reach_90(0.0)
    assert 0 < fast <= 5  # within 0.2 s
    assert fast < slow


def test_a_lost_track_is_forgotten_and_starts_afresh() -> None:
    smoother = PoseSmoother(OneEuroParams(min_cutoff=0.5, beta=0.0))
    at = np.array([[[0.0, 0.0, 0.9]]])
    for k in range(5):
        smoother([7], at, k / FPS)
    far = np.array([[[200.0, 100.0, 0.8]]])
    pulled = smoother([7], far, 5 / FPS)
    assert pulled[0, 0, 0] < 150.0  # still following: pulled towards the old place
    smoother([8], at, 6 / FPS)  # track 7 missing from this frame
    assert smoother.tracks == {8}
    back = smoother([7], far, 7 / FPS)
    np.testing.assert_array_equal(back, far)  # a fresh filter: its first sample as it is


def test_scores_pass_and_the_input_is_not_changed() -> None:
    smoother = PoseSmoother(OneEuroParams(min_cutoff=1.0, beta=0.0))
    first = np.array([[[10.0, 10.0, 0.5]]], dtype=np.float32)
    smoother([1], first, 0.0)
    second = np.array([[[20.0, 10.0, 0.7]]], dtype=np.float32)
    out = smoother([1], second, 0.04)
    assert out.dtype == np.float32 and out[0, 0, 2] == pytest.approx(0.7)
    assert 10.0 < out[0, 0, 0] < 20.0 and second[0, 0, 0] == 20.0


def test_time_that_does_not_advance_restarts_the_track() -> None:
    filt = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0))
    filt(np.zeros((1, 2)), 1.0)
    np.testing.assert_array_equal(filt(np.full((1, 2), 50.0), 1.0), np.full((1, 2), 50.0))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="min_cutoff > 0"):
        OneEuroParams(min_cutoff=0.0, beta=0.1)
