"""The SDK's progress bar drawn from scripted job statuses (no server): one speed and one time
left, the job's own, followed as it changes; no bar before the number of frames is known."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tdmi.client.job_rate import JobRate
from tdmi.client.waiting import JobWaiter
from tdmi.protocol import JobLinks, JobProgress, JobPublic, JobStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LINKS = JobLinks(self="http://x/v1/pose/j1", result="http://x/v1/pose/j1/result", video=None)


def _job(
    status: JobStatus,
    done: int,
    total: int | None,
    seconds: float,
    server_fps: float | None = None,
) -> JobPublic:
    return JobPublic(
        job_id="j1",
        status=status,
        model="tdmi-tiny",
        progress=JobProgress(frames_done=done, frames_total=total, frames_per_second=server_fps),
        created_at=T0,
        updated_at=T0 + timedelta(seconds=seconds),
        links=LINKS,
    )


def _slowing_job(total: int = 1200) -> list[JobPublic]:
    """Queued for 30 s, then 10 frames/s for 60 s, then 5 frames/s (a second job started beside
    it) for 60 s, polled twice per progress update; the server's figure is its running average."""
    statuses = [_job("queued", 0, None, 0), _job("queued", 0, None, 30)]
    done, seconds = 0, 30.0
    for fps in [10.0] * 60 + [5.0] * 60:
        done, seconds = done + int(fps), seconds + 1.0
        average = done / (seconds - 30)
        statuses += [_job("running", done, total, seconds, average)] * 2
    return statuses + [_job("done", total, total, seconds + 120)]


def _drawn(text: str) -> list[str]:
    """Each state of the bar as written to the terminal (tqdm redraws the line after a \\r)."""
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def test_one_speed_and_one_time_left_and_no_bar_before_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    waiter = JobWaiter(progress=True)
    statuses = _slowing_job()
    assert waiter.step(statuses[0]) is None and waiter.step(statuses[1]) is None
    assert capsys.readouterr().err == ""  # queued, frames unknown: nothing drawn yet
    for status in statuses[2:-1]:
        assert waiter.step(status) is None
    assert waiter.step(statuses[-1]) == statuses[-1]
    lines = _drawn(capsys.readouterr().err)
    assert lines[0].startswith("j1 running:   1%|")  # the server's figure until a second update
    assert lines[0].endswith(" 10/1200 frames, 10.0 frames/s, 01:59 left")
    running = [line for line in lines if " running: " in line]
    assert len(running) > 100
    for line in running:  # tqdm's own unit rate ("frame/s", "?") and its ETA brackets are gone
        assert line.count("frames/s") == 1 and line.count(" left") == 1, line
        assert "frame/s" not in line.replace("frames/s", "") and "?" not in line and "<" not in line
    fps, minutes, seconds = re.findall(r"([0-9.]+) frames/s, (\d+):(\d+) left$", running[-1])[0]
    assert float(fps) == pytest.approx(5.0, abs=0.3)  # the last minute's pace, not the average 7.5
    assert int(minutes) * 60 + int(seconds) == pytest.approx((1200 - 900) / float(fps), abs=2)
    assert lines[-1].startswith("j1 done: 100%|") and lines[-1].endswith(" 1200/1200 frames")


def test_the_speed_follows_a_slowdown_that_the_servers_average_keeps_behind() -> None:
    rate = JobRate()
    statuses = _slowing_job()
    for status in statuses[:-1]:
        rate.update(status)
    last = statuses[-2]
    assert last.progress.frames_per_second == pytest.approx(7.5)  # the server's: the whole run
    assert rate.frames_per_second == pytest.approx(5.0, rel=0.05)  # the pace of the last minute
    assert rate.seconds_left(last) == pytest.approx((1200 - 900) / rate.frames_per_second)


def test_the_first_figure_is_the_servers_and_the_queue_wait_is_not_counted() -> None:
    rate = JobRate()
    rate.update(_job("queued", 0, None, 0))
    rate.update(_job("running", 60, 795, 600, server_fps=1.0))  # running after a long queue
    assert rate.frames_per_second == 1.0 and rate.seconds_left(_job("running", 60, 795, 600)) == 735.0
    rate.update(_job("running", 80, 795, 610, server_fps=1.4))
    measured = 20 / 10  # over the server's timestamps, from the first running status
    assert 1.0 < rate.frames_per_second < measured
    rate.update(_job("queued", 0, None, 620))  # requeued: the run starts over
    rate.update(_job("running", 0, 795, 700))
    rate.update(_job("running", 30, 795, 710))
    assert rate.frames_per_second == pytest.approx(3.0)  # measured afresh, nothing of the old run


def test_the_bar_shows_the_servers_figure_at_first() -> None:
    waiter = JobWaiter(progress=True)
    assert waiter.step(_job("running", 60, 795, 60, server_fps=1.0)) is None
    assert waiter._bar is not None
    assert waiter._bar.postfix == "1.0 frames/s, 12:15 left"
    waiter.close()
