"""``bench.cpu`` and ``bench.processes`` on this test's own process and on a small session of its own."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.cpu import (
    EVENT_LOOP,
    UNNAMED,
    CpuUse,
    cpu_between,
    process_start,
    session_pids,
    snapshot,
    stage_cpu_ms,
)
from bench.processes import SessionProcess
from tdmi.service.inference.threads import named_threads


def _burn(seconds: float) -> None:
    """Spin until this thread has spent ``seconds`` of CPU (not wall) time."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_a_named_thread_burning_cpu_is_counted_under_its_name() -> None:
    with named_threads("bench-burner", 2) as pool:
        pool.submit(time.sleep, 0).result()  # the pool's threads exist before the first snapshot
        before = snapshot(os.getpid())
        for future in [pool.submit(_burn, 0.3) for _ in range(2)]:
            future.result()
        after = snapshot(os.getpid())
    use = cpu_between(before, after)
    assert use.groups["bench-burner"] == pytest.approx(0.6, abs=0.1)  # clock ticks: 10 ms each
    assert use.threads["bench-burner"] == 2
    assert use.groups[EVENT_LOOP] < 0.3  # the main thread waited
    assert use.process_s >= use.groups["bench-burner"] - 0.02
    assert use.session_s is None  # pytest does not lead a session: only a session leader's is read


def test_a_thread_that_ended_is_unaccounted_but_in_the_process_total() -> None:
    before = snapshot(os.getpid())
    tids: list[int] = []
    thread = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), _burn(0.3)))
    thread.start()
    thread.join()
    while os.path.exists(f"/proc/self/task/{tids[0]}"):  # the OS thread outlives join() a moment
        time.sleep(0.01)
    use = cpu_between(before, snapshot(os.getpid()))
    assert use.unaccounted_s == pytest.approx(0.3, abs=0.1)
    per_frame = use.per_unit_ms(3)
    assert per_frame["unaccounted_ms"] == pytest.approx(1e3 * use.unaccounted_s / 3)


def test_the_session_holds_this_process() -> None:
    assert os.getpid() in session_pids(os.getsid(0))


_LEADER = """
import os, subprocess, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
subprocess.Popen([sys.executable, "-c", sys.argv[2]]).wait()
"""
_WORKER = """
import time
start = time.process_time()
while time.process_time() - start < 0.4:
    pass
print("done", flush=True)
time.sleep(600)
"""


def test_a_session_is_measured_whole_and_ended_whole(tmp_path: Path) -> None:
    go = tmp_path / "go"
    server = SessionProcess([sys.executable, "-c", _LEADER, str(go), _WORKER], tmp_path / "log")
    try:
        before = snapshot(server.proc.pid)
        go.touch()  # the leader starts its worker, which burns 0.4 s of CPU and sleeps
        while "done" not in server.log():
            time.sleep(0.05)
        use = cpu_between(before, snapshot(server.proc.pid))
        assert len(session_pids(server.session)) == 2
    finally:
        server.stop(grace=5)
    assert use.session_s is not None and use.session_s >= 0.35  # the worker's, counted in the session
    assert use.process_s < 0.35  # the leader only waited
    assert session_pids(server.session) == []  # the worker, asleep, was ended with its leader
    assert len(server.ended) == 2  # the leader and its worker, listed before they were ended
    assert all(process_start(pid) != start for pid, start in server.ended)


def test_the_stages_split_the_event_loops_cpu_and_add_up_to_the_process() -> None:
    use = CpuUse(
        groups={EVENT_LOOP: 0.5, UNNAMED: 0.3, "tdmi-device": 1.0, "tdmi-prepare": 0.2, "tdmi-log": 0.05},
        threads={EVENT_LOOP: 1, UNNAMED: 2, "tdmi-device": 1, "tdmi-prepare": 1, "tdmi-log": 1},
        process_s=2.1,
        session_s=None,
    )
    counters = {"receive": 0.05, "decode": 0.25, "buffer": 0.01, "track": 0.1, "encode": 0.04, "send": 0.1}
    ms = stage_cpu_ms(use, counters, units=100)  # 100 person-frames
    assert ms["JPEG decode"] == pytest.approx(2.5)  # the counter, not the default pool's other work
    assert ms["model"] == pytest.approx(10.0) and ms["heatmap decoding"] == 0.0  # thread groups
    assert ms["event loop itself"] == pytest.approx(5.0 - 3.0)  # its thread less its counted stages
    # the pool's other 0.05 s, the log thread's 0.05 s and the 0.05 s no live thread holds
    assert ms["other"] == pytest.approx(1.5)
    assert ms["process"] == pytest.approx(21.0)
    assert sum(v for k, v in ms.items() if k != "process") == pytest.approx(21.0)
    with pytest.raises(ValueError):
        stage_cpu_ms(use, counters, units=0)
