"""CPU time of a server, per thread group and in all, read from ``/proc`` (Linux).

The kernel counts each thread's CPU time (``utime + stime`` in ``/proc/<pid>/task/<tid>/stat``)
whether the thread runs, waits or sleeps, so a snapshot before and one after a phase say how much
CPU each thread spent in it: not wall time, which counts waiting as work. The service names its
pipeline threads (``tdmi.service.inference.threads``) and a thread a named thread starts inherits
its name (torch's workers started by ``tdmi-device`` are ``tdmi-device`` too), so threads are
grouped by name: the main thread is the event loop; unnamed threads (the name of the process) are
the default pool's (the live path's JPEG decoding) and any library worker the main thread started.
The process's own counter also holds the threads that ended during the phase: what no live thread
accounts for is reported as unaccounted. A server that forks workers (LitServe) is measured as its
whole session, every process in it (each started in a session of its own).

Per stage (``stage_cpu_ms``): a stage with a thread of its own is that thread group's CPU; the
stages that share the event loop's thread, and the JPEG decoding on the default pool, are the
server's CPU counters per stage (``tdmi_stage_cpu_seconds_total``, ``time.thread_time`` around
each); what the event loop's thread spent beyond its counted stages is the event loop itself
(asyncio, uvicorn, the WebSocket framing and the batcher hand-off).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import print_table

__all__ = [
    "EVENT_LOOP",
    "LIVE_STAGES",
    "SERVICE_STAGES",
    "UNNAMED",
    "CpuSnapshot",
    "CpuUse",
    "cpu_between",
    "print_cpu_table",
    "print_stage_table",
    "process_start",
    "session_pids",
    "session_seconds",
    "snapshot",
    "stage_cpu_ms",
    "thread_seconds",
]

EVENT_LOOP = "event loop (main thread)"
UNNAMED = "unnamed (default pool)"
_TICK = 1.0 / os.sysconf("SC_CLK_TCK")
_POOL_INDEX = re.compile(r"[-_]\d+$")  # tdmi-decode-3 and tdmi-decode-4 are one group
# fields of /proc/<pid>/stat after the ")" closing the name (field 3 of stat(5) is index 0 here)
_STATE, _SESSION, _UTIME, _STIME, _CUTIME, _CSTIME, _START = 0, 3, 11, 12, 13, 14, 19


def _fields(stat: Path) -> list[str]:
    text = stat.read_text()
    return text[text.rindex(")") + 2 :].split()


def _seconds(fields: list[str], children: bool = False) -> float:
    ticks = int(fields[_UTIME]) + int(fields[_STIME])
    if children:
        ticks += int(fields[_CUTIME]) + int(fields[_CSTIME])
    return ticks * _TICK


def thread_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread of ``pid``: its id -> (name, CPU seconds so far)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[int(task.name)] = (name, _seconds(_fields(task / "stat")))
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return out


def session_pids(session: int) -> list[int]:
    """The processes of session ``session`` that are not dead (zombies are, and hold no CPU)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _fields(entry / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[_SESSION]) == session and fields[_STATE] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None when no such process lives: with
    the pid, it names one process even after its pid is reused."""
    try:
        fields = _fields(Path(f"/proc/{pid}/stat"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[_STATE] in ("Z", "X") else int(fields[_START])


def session_seconds(session: int) -> float:
    """CPU seconds of every process of ``session``, with its ended and reaped children's."""
    total = 0.0
    for pid in session_pids(session):
        try:
            total += _seconds(_fields(Path(f"/proc/{pid}/stat")), children=True)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass(frozen=True)
class CpuSnapshot:
    pid: int
    threads: dict[int, tuple[str, float]]
    process_s: float
    session_s: float | None  # None: ``pid`` does not lead a session of its own


def snapshot(pid: int) -> CpuSnapshot:
    """The CPU seconds so far of ``pid``'s threads, of ``pid`` and of the session it leads if it
    leads one (a server started in a session of its own, with any workers it started)."""
    threads = thread_seconds(pid)
    process = _seconds(_fields(Path(f"/proc/{pid}/stat")))
    session = session_seconds(pid) if os.getsid(pid) == pid else None
    return CpuSnapshot(pid, threads, process, session)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent between two snapshots."""

    groups: dict[str, float]  # thread group -> seconds
    threads: dict[str, int]  # thread group -> live threads
    process_s: float
    session_s: float | None

    @property
    def unaccounted_s(self) -> float:
        """The process's time that no live thread holds: threads that ended meanwhile, and the
        rounding of each thread's count down to clock ticks (10 ms; up to a tick per thread, so
        short phases show more of it)."""
        return self.process_s - sum(self.groups.values())

    def per_unit_ms(self, units: float) -> dict[str, Any]:
        """Milliseconds per unit (a person-frame) of each group, the process and the session."""
        if units <= 0:
            raise ValueError(f"CPU per unit needs units, got {units}")
        scale = 1e3 / units
        return {
            "groups": {
                name: {"ms": seconds * scale, "threads": self.threads[name]}
                for name, seconds in sorted(self.groups.items(), key=lambda kv: -kv[1])
            },
            "process_ms": self.process_s * scale,
            "unaccounted_ms": self.unaccounted_s * scale,
            "session_ms": None if self.session_s is None else self.session_s * scale,
        }


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    """What each thread group of ``after.pid`` spent since ``before`` (a new thread: all it spent)."""
    main_name = after.threads.get(after.pid, ("", 0.0))[0]
    groups: dict[str, float] = {}
    counts: dict[str, int] = {}
    for tid, (name, seconds) in after.threads.items():
        group = _group(tid, name, after.pid, main_name)
        spent = seconds - before.threads[tid][1] if tid in before.threads else seconds
        groups[group] = groups.get(group, 0.0) + spent
        counts[group] = counts.get(group, 0) + 1
    session = (
        None if after.session_s is None or before.session_s is None else after.session_s - before.session_s
    )
    return CpuUse(groups, counts, after.process_s - before.process_s, session)


def _group(tid: int, name: str, pid: int, main_name: str) -> str:
    if tid == pid:
        return EVENT_LOOP
    if name == main_name:
        return UNNAMED
    return _POOL_INDEX.sub("", name)


# what each of the service's thread groups does on the live path (docs/architecture.md "Threads")
SERVICE_STAGES = {
    EVENT_LOOP: "receive, buffer, tracking and box propagation, result encoding, send",
    UNNAMED: "JPEG decode",
    "tdmi-prepare": "crops and normalisation",
    "tdmi-device": "model",
    "tdmi-finish": "heatmap decoding",
    "tdmi-detect": "person detection",
    "tdmi-log": "logging",
}


def print_cpu_table(cpu: dict[str, Any]) -> None:
    """The table of ``CpuUse.per_unit_ms``: each thread group, then the totals."""
    rows: list[tuple[object, ...]] = [
        (name, SERVICE_STAGES.get(name, ""), group["threads"], group["ms"])
        for name, group in cpu["groups"].items()
    ]
    rows += [
        ("unaccounted", "threads that ended in the phase", "", cpu["unaccounted_ms"]),
        ("process", "all of the above", "", cpu["process_ms"]),
    ]
    if cpu["session_ms"] is not None:
        rows.append(("session", "every process of the server's session", "", cpu["session_ms"]))
    print_table(("thread group", "stages", "threads", "CPU ms / person-frame"), rows)


# the live path's stages: (stage, its thread, where its CPU is read: a counter's stage label, or
# None for the thread group of its own)
LIVE_STAGES = (
    ("receive", EVENT_LOOP, "receive"),
    ("JPEG decode", UNNAMED, "decode"),
    ("buffer", EVENT_LOOP, "buffer"),
    ("crops and normalisation", "tdmi-prepare", None),
    ("model", "tdmi-device", None),
    ("heatmap decoding", "tdmi-finish", None),
    ("tracking and box propagation", EVENT_LOOP, "track"),
    ("result encoding", EVENT_LOOP, "encode"),
    ("send", EVENT_LOOP, "send"),
)
LOOP_ITSELF = "event loop itself"
OTHER = "other"


def stage_cpu_ms(use: CpuUse, counters: dict[str, float], units: float) -> dict[str, float]:
    """CPU milliseconds per unit (a person-frame) of each live stage (``LIVE_STAGES``), of the
    event loop itself (its thread's CPU less its counted stages), of the rest of the process
    (``OTHER``: the default pool's other work, the log thread, threads that ended) and the process.
    ``counters``: the CPU seconds per counted stage in the same phase (``bench.scrape``)."""
    if units <= 0:
        raise ValueError(f"CPU per unit needs units, got {units}")
    seconds = {
        stage: counters.get(label, 0.0) if label is not None else use.groups.get(thread, 0.0)
        for stage, thread, label in LIVE_STAGES
    }
    on_loop = sum(seconds[stage] for stage, thread, label in LIVE_STAGES if thread == EVENT_LOOP)
    seconds[LOOP_ITSELF] = use.groups.get(EVENT_LOOP, 0.0) - on_loop
    seconds[OTHER] = use.process_s - sum(seconds.values())
    seconds["process"] = use.process_s
    return {stage: 1e3 * s / units for stage, s in seconds.items()}


def print_stage_table(stages: dict[str, float]) -> None:
    """The table of ``stage_cpu_ms``: each stage, its thread, its CPU and its share of the process."""
    threads = {stage: thread for stage, thread, _ in LIVE_STAGES} | {LOOP_ITSELF: EVENT_LOOP}
    process = stages["process"]
    print_table(
        ("stage", "thread", "CPU ms / person-frame", "% of process"),
        [
            (stage, threads.get(stage, ""), ms, 100.0 * ms / process if process > 0 else math.nan)
            for stage, ms in stages.items()
        ],
    )
