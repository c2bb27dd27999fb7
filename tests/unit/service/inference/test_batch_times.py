"""The model-time estimate behind the latency budget, fed with made-up measurements (no clocks)."""

from __future__ import annotations

import pytest

from tdmi.service.inference.batch_times import BatchTimes

BUCKETS = [1, 2, 4, 8]


def test_nothing_measured_estimates_nothing() -> None:
    assert BatchTimes(BUCKETS).estimate(3) is None


def test_a_batch_costs_its_bucket() -> None:
    times = BatchTimes(BUCKETS)
    for size, seconds in zip(BUCKETS, (0.02, 0.03, 0.05, 0.09)):
        times.observe(size, seconds)
    assert times.estimate(8) == pytest.approx(0.09, abs=1e-12)
    assert times.estimate(3) == pytest.approx(0.05, abs=1e-12)  # 3 clips run padded to bucket 4
    assert times.estimate(30) == pytest.approx(0.09, abs=1e-12)  # oversized: the largest bucket's


def test_measurements_move_the_estimate_by_a_moving_average() -> None:
    times = BatchTimes(BUCKETS, smoothing=0.5)
    times.observe(4, 0.1)
    times.observe(3, 0.2)  # bucket 4 too
    assert times.estimate(4) == pytest.approx(0.15, abs=1e-12)
    times.observe(9, 10.0)  # past the largest bucket: several runs, not kept
    assert times.estimate(8) == pytest.approx(0.3, abs=1e-12)


def test_unmeasured_buckets_get_an_upper_bound_from_their_neighbours() -> None:
    times = BatchTimes(BUCKETS)
    times.observe(2, 0.04)
    assert times.estimate(8) == pytest.approx(0.16, abs=1e-12)  # at most bucket 2's time per clip
    assert times.estimate(1) == pytest.approx(0.04, abs=1e-12)  # at most what the bigger batch costs


def test_a_bucket_measured_high_once_is_bounded_by_its_neighbours() -> None:
    times = BatchTimes(BUCKETS)
    times.observe(8, 5.0)  # a first run that compiled
    assert times.estimate(8) == pytest.approx(5.0, abs=1e-12)
    times.observe(4, 0.04)
    assert times.estimate(8) == pytest.approx(0.08, abs=1e-12)  # at most bucket 4's time per clip


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        BatchTimes([])
    with pytest.raises(ValueError):
        BatchTimes(BUCKETS, smoothing=0)
