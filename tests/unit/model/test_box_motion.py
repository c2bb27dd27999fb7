"""The constant-velocity box: it learns a steady walk, predicts it, and trusts a coasting box less."""

from __future__ import annotations

import numpy as np

from tdmi.model.box_motion import BoxMotion, centre_size, corners


def _box(x: float) -> np.ndarray:
    return np.array([x, 50.0, x + 40.0, 150.0])


def test_corners_and_centre_size_invert_each_other() -> None:
    box = np.array([10.0, 20.0, 50.0, 120.0])
    np.testing.assert_allclose(centre_size(box), [30, 70, 40, 100])
    np.testing.assert_allclose(corners(centre_size(box)), box)


def test_a_steady_walk_is_learnt_and_carried_on_without_measurements() -> None:
    motion = BoxMotion(_box(0.0))
    for frame in range(1, 30):
        motion.predict()
        motion.correct(_box(3.0 * frame))  # 3 px per frame to the right
    assert abs(motion.velocity[0] - 3.0) < 0.1 and abs(motion.velocity[1]) < 0.1
    for _ in range(30, 35):  # no measurement: the box keeps walking
        predicted = motion.predict()
    np.testing.assert_allclose(predicted, _box(3.0 * 34), atol=1.0)


def test_a_coasting_box_grows_less_sure_so_the_next_measurement_counts_more() -> None:
    steady, coasting = BoxMotion(_box(0.0)), BoxMotion(_box(0.0))
    for _ in range(10):
        steady.predict()
        steady.correct(_box(0.0))
        coasting.predict()
        coasting.correct(_box(0.0))
    for _ in range(8):
        coasting.predict()
    steady.predict()
    assert coasting.covariance[0, 0] > 4 * steady.covariance[0, 0]
    jump = _box(20.0)
    moved_steady = steady.correct(jump)[0]
    moved_coasting = coasting.correct(jump)[0]
    assert 0 < moved_steady < moved_coasting < 20.0
