"""What only the SQLite job queue has: its file, its order after a restart, older databases,
and the shared file helpers. The queue's behaviour is tested against both storages in
``tests/integration/jobs``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from tdmi.service.jobs.queue import NewJob
from tdmi.service.jobs.sqlite import SqliteJobQueue
from tdmi.service.jobs.store import new_job_id, write_json_atomic


async def _taken(queue: SqliteJobQueue) -> str:
    claim = await queue.take()
    assert claim is not None
    return claim.job_id


def test_a_reopened_queue_runs_interrupted_jobs_first_then_queued_ones_oldest_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = SqliteJobQueue(tmp_path)
        ids = [new_job_id() for _ in range(3)]
        for job_id in ids:
            await first.create(NewJob(job_id, "m", {"render": False}, tmp_path / "uploads" / job_id, 9, None))
        assert await _taken(first) == ids[0]  # taken, never started: still queued
        running = await first.take()
        assert running is not None and await first.start(running, "w") is not None
        first.close()  # ids[1] is running when the process dies

        reopened = SqliteJobQueue(tmp_path)
        assert [await _taken(reopened) for _ in range(3)] == [ids[1], ids[0], ids[2]]
        with contextlib.closing(sqlite3.connect(tmp_path / "jobs.sqlite3")) as other:  # WAL: a file property
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        reopened.close()

    asyncio.run(scenario())


def test_a_database_of_the_first_release_gains_the_new_columns(tmp_path: Path) -> None:
    job_id = new_job_id()
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.sqlite3")) as old:
        old.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, model TEXT NOT NULL, "
            "options TEXT NOT NULL, input_path TEXT, frames_done INTEGER NOT NULL DEFAULT 0, "
            "frames_total INTEGER, error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
            "result_path TEXT, video_path TEXT)"
        )
        old.execute(
            "INSERT INTO jobs (id, status, model, options, created_at, updated_at) "
            "VALUES (?, 'done', 'm', '{}', 1, 1)",
            (job_id,),
        )
        old.commit()

    async def scenario() -> None:
        queue = SqliteJobQueue(tmp_path)
        record = await queue.get(job_id)
        assert record is not None and (record.status, record.owner, record.attempts) == ("done", None, 0)
        queue.close()

    asyncio.run(scenario())


def test_options_must_be_json(tmp_path: Path) -> None:
    async def scenario() -> None:
        queue = SqliteJobQueue(tmp_path)
        for options in ({"boxes": {1, 2}}, {"score": float("nan")}):
            with pytest.raises(ValueError, match="plain JSON"):
                await queue.create(NewJob(new_job_id(), "m", options, tmp_path / "x", 1, None))
        assert await queue.queued() == 0
        queue.close()

    asyncio.run(scenario())


def test_write_json_atomic_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"frames": [1, 2]})
    write_json_atomic(path, {"frames": [3]})
    assert json.loads(path.read_text()) == {"frames": [3]}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"frames": [float("nan")]})  # never invalid JSON on disk
    assert json.loads(path.read_text()) == {"frames": [3]}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left behind
