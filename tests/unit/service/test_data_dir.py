"""The data directory: one owner at a time (a real second process), and leftover files swept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tdmi.service.data_dir_lock import DataDirInUseError, hold_data_dir, release_data_dir
from tdmi.service.jobs.leftovers import sweep_leftovers
from tdmi.service.jobs.queue import NewJob
from tdmi.service.jobs.sqlite import SqliteJobQueue
from tdmi.service.jobs.store import new_job_id

_HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from tdmi.service.data_dir_lock import hold_data_dir\n"
    "hold_data_dir(Path(sys.argv[1]))\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def _holder(folder: Path) -> subprocess.Popen[str]:
    """Another process holding ``folder``'s lock, as a running ``tdmi serve`` does."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_cannot_take_a_held_data_dir_and_can_once_the_holder_is_killed(
    tmp_path: Path,
) -> None:
    holder = _holder(tmp_path)
    try:
        with pytest.raises(DataDirInUseError) as refused:
            hold_data_dir(tmp_path)
        message = str(refused.value)
        assert str(tmp_path.resolve()) in message and f"pid {holder.pid}" in message
        assert "\n" not in message  # the CLI prints it as one line
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel releases the lock
        holder.wait()
    assert hold_data_dir(tmp_path) is True
    try:
        assert hold_data_dir(tmp_path) is False  # this process holds it already (CLI, then node)
    finally:
        release_data_dir(tmp_path)
    again = _holder(tmp_path)  # released: another process may take it
    again.kill()
    again.wait()


def _write(path: Path, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if age_s:
        past = time.time() - age_s
        os.utime(path, (past, past))
    return path


def test_the_sweep_removes_what_no_job_reads_and_keeps_every_current_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        queue = SqliteJobQueue(tmp_path)
        try:
            job = new_job_id()
            upload = _write(tmp_path / "uploads" / f"{job}.mp4", age_s=7200)
            await queue.create(NewJob(job, "tdmi-tiny", {}, upload, 10, None))
            lost, killed = new_job_id(), new_job_id()
            leftovers = [
                _write(tmp_path / "uploads" / f"{lost}.mp4", age_s=7200),  # a job Redis forgot
                _write(tmp_path / "uploads" / killed, age_s=7200),  # an upload cut by a kill
                _write(tmp_path / "results" / f"{job}.0123456789ab.json", age_s=7200),  # a lost run's
                _write(tmp_path / "videos" / f".{job}.0123456789ab.mp4.part", age_s=7200),
                _write(tmp_path / "results" / f".{job}.0123456789ab.json.k2j3h4.tmp", age_s=7200),
            ]
            young = _write(tmp_path / "uploads" / f"{new_job_id()}.mp4")  # maybe being written
            foreign = _write(tmp_path / "videos" / "notes.txt", age_s=7200)  # not a job's name
            assert await sweep_leftovers(queue, tmp_path, grace_s=3600) == len(leftovers)
            assert not any(path.exists() for path in leftovers)
            assert upload.exists() and young.exists() and foreign.exists()
            assert await sweep_leftovers(queue, tmp_path, grace_s=0) == 1  # at start-up: no grace
            assert not young.exists() and upload.exists()
        finally:
            queue.close()

    asyncio.run(scenario())
