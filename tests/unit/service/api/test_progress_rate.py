"""Job speed and time left, measured over the store's progress timestamps (no clock of its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tdmi.service.jobs.progress_rate import ProgressRates

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_rate_and_eta_come_from_the_progress_timestamps() -> None:
    rates = ProgressRates()
    first = rates.progress("a", True, 0, 795, T0)
    assert first.frames_per_second is None and first.eta_seconds is None  # one point: no rate yet
    later = rates.progress("a", True, 60, 795, T0 + timedelta(seconds=60))
    assert later.frames_per_second == pytest.approx(1.0, abs=1e-9)
    assert later.eta_seconds == pytest.approx(735.0, abs=1e-6)
    again = rates.progress("a", True, 60, 795, T0 + timedelta(seconds=60))  # a poll between updates
    assert again == later
    unknown_total = ProgressRates()
    unknown_total.progress("b", True, 10, None, T0)
    measured = unknown_total.progress("b", True, 30, None, T0 + timedelta(seconds=4))
    assert measured.frames_per_second == pytest.approx(5.0) and measured.eta_seconds is None


def test_a_job_run_again_or_finished_starts_over_and_the_memory_is_bounded() -> None:
    rates = ProgressRates(max_jobs=2)
    rates.progress("a", True, 0, 100, T0)
    rates.progress("a", True, 50, 100, T0 + timedelta(seconds=10))
    rerun = rates.progress("a", True, 5, 100, T0 + timedelta(seconds=20))  # requeued, from frame 0
    assert rerun.frames_per_second is None
    assert rates.progress("a", True, 25, 100, T0 + timedelta(seconds=30)).frames_per_second == pytest.approx(
        2.0
    )
    assert rates.progress("a", False, 100, 100, T0 + timedelta(seconds=40)).frames_per_second is None
    for job in ("b", "c", "d"):
        rates.progress(job, True, 0, 10, T0)
    assert rates.progress("b", True, 10, 10, T0 + timedelta(seconds=1)).frames_per_second is None  # forgotten
