"""The camera reader's parts that need no camera: the newest-frame mailbox and the pts clock."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tdmi.service.sources.reader import CameraFrame, _Mailbox, _StreamClock


def _frame(seq: int) -> CameraFrame:
    return CameraFrame(seq=seq, image=np.zeros((2, 2, 3), np.uint8), captured_at=float(seq), pts_s=None)


def test_the_mailbox_keeps_the_newest_frame_and_counts_those_nobody_took() -> None:
    mailbox = _Mailbox()
    mailbox.put(_frame(1))
    assert mailbox.take(after=0, timeout=0).seq == 1  # type: ignore[union-attr]
    mailbox.put(_frame(2))  # replaces a frame already taken: not a skip
    mailbox.put(_frame(3))  # replaces 2, never taken: a skip
    mailbox.put(_frame(4))
    assert mailbox.skipped == 2
    assert mailbox.take(after=1, timeout=0).seq == 4  # type: ignore[union-attr]
    assert mailbox.take(after=4, timeout=0.01) is None  # nothing newer: waits, then None


def test_a_waiting_consumer_wakes_for_a_new_frame_and_for_close() -> None:
    mailbox = _Mailbox()
    got: list[CameraFrame | None] = []
    waiter = threading.Thread(target=lambda: got.append(mailbox.take(after=0, timeout=30)))
    waiter.start()
    mailbox.put(_frame(1))
    waiter.join(timeout=10)
    assert [f.seq for f in got if f] == [1]
    waiter = threading.Thread(target=lambda: got.append(mailbox.take(after=1, timeout=30)))
    waiter.start()
    mailbox.close()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and got[-1] is None
    assert mailbox.take(after=0, timeout=0) is None  # closed: the frame is let go


def test_the_clock_maps_pts_to_the_earliest_arrival_and_starts_over_when_pts_go_back() -> None:
    clock = _StreamClock(timed=True)
    # the first frames waited in a buffer: they arrive together at 100.5
    assert clock.captured_at(0.0, now=100.5) == pytest.approx(100.5)
    assert clock.captured_at(0.1, now=100.5) == pytest.approx(100.5)
    # from here frames arrive as they are made: the offset follows the least delayed
    assert clock.captured_at(1.0, now=100.02 + 1.0) == pytest.approx(101.02)
    assert clock.captured_at(2.0, now=102.05) == pytest.approx(102.02)  # a late one keeps the offset
    assert clock.captured_at(0.0, now=200.0) == pytest.approx(200.0)  # pts back to 0: a new stream
    assert clock.captured_at(0.5, now=210.0) == pytest.approx(210.0)  # far behind its arrival: resync
    assert clock.captured_at(None, now=300.0) == 300.0
