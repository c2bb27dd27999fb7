"""The embedded mode's job queue: one SQLite table, and a FIFO of job ids in the process.

``jobs.sqlite3`` in ``data_dir`` runs in WAL mode, so readers never wait for the writer. One
connection serves all threads behind a lock; each call is a sub-millisecond statement, short
enough to make from the event loop. Every change of a run is one conditional UPDATE on the run's
token (the same fencing as Redis), so a late ``finish`` cannot resurrect a cancelled job.

On opening, jobs still ``running`` (their process died) are queued first, then the ``queued``
ones, oldest first; ``start`` counts the former as crashed runs.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tdmi.service.jobs.queue import CRASHED, Charge, Claim, Deletion, NewJob, StartInfo
from tdmi.service.jobs.store import JobRecord, checked_id, options_json

__all__ = ["SqliteJobQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    model TEXT NOT NULL,
    options TEXT NOT NULL,
    input_path TEXT,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    result_path TEXT,
    video_path TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
"""
# columns added since the first release; an older database gains them when opened
_ADDED = {
    "owner": "TEXT",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "crashes": "INTEGER NOT NULL DEFAULT 0",
    "token": "TEXT",
    "worker": "TEXT",
    "deleted": "INTEGER NOT NULL DEFAULT 0",
    "retries": "INTEGER NOT NULL DEFAULT 0",
}
_TAKE_WAIT_S = 1.0


class SqliteJobQueue:
    """``JobQueue`` for one process; safe to share between threads (the FIFO is the loop's)."""

    def __init__(self, data_dir: str | Path, *, clock: Callable[[], float] = time.time):
        self.data_dir = Path(data_dir)
        for folder in ("uploads", "results", "videos"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        # autocommit: single statements commit at once; multi-statement changes use _transaction()
        self._db = sqlite3.connect(
            self.data_dir / "jobs.sqlite3", timeout=10.0, check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
            waiting = self._db.execute(
                "SELECT id FROM jobs WHERE status IN ('running', 'queued') "
                "ORDER BY status = 'queued', created_at, rowid"
            ).fetchall()
        self._fifo: asyncio.Queue[str] = asyncio.Queue()
        for row in waiting:
            self._fifo.put_nowait(row["id"])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- API side --------------------------------------------------------------------------------

    async def create(self, job: NewJob) -> JobRecord:
        now = self._clock()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, status, model, options, input_path, frames_total, created_at, "
                "updated_at, owner) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (
                    checked_id(job.job_id),
                    job.model,
                    options_json(job.options),
                    str(job.input_path),
                    job.frames_total,
                    now,
                    now,
                    job.owner,
                ),
            )
            record = self._get(job.job_id)
        assert record is not None  # inserted under the same lock
        self._fifo.put_nowait(job.job_id)
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._get(job_id)

    async def queued(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0])

    async def cancel(self, job_id: str) -> str | None:
        with self._lock, self._transaction():
            row = self._db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] not in ("queued", "running"):
                return None
            self._db.execute(
                "UPDATE jobs SET status = 'cancelled', updated_at = ? WHERE id = ?", (self._clock(), job_id)
            )
            return str(row["status"])

    async def delete(self, job_id: str, finished_before: float | None = None) -> Deletion | None:
        with self._lock, self._transaction():
            record = self._get(job_id)
            if record is None:
                return None
            if finished_before is not None and (
                not record.finished or record.updated_at.timestamp() >= finished_before
            ):
                return None
            if record.status == "running":
                self._db.execute(
                    "UPDATE jobs SET status = 'cancelled', deleted = 1, updated_at = ? WHERE id = ?",
                    (self._clock(), job_id),
                )
                return Deletion("deferred", record)
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return Deletion("deleted", record)

    async def finished_ids(self, before: float) -> builtins.list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND updated_at < ?",
                (before,),
            ).fetchall()
        return [row["id"] for row in rows]

    # -- runner side ---------------------------------------------------------------------------

    async def take(self) -> Claim | None:
        try:
            job_id = await asyncio.wait_for(self._fifo.get(), _TAKE_WAIT_S)
        except TimeoutError:
            return None
        return Claim(job_id)

    async def start(self, claim: Claim, worker_id: str) -> StartInfo | None:
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT status, attempts, crashes, error, retries FROM jobs WHERE id = ?", (claim.job_id,)
            ).fetchone()
            if row is None or row["status"] not in ("queued", "running"):
                return None
            crashed = row["status"] == "running"  # its last run never ended
            info = StartInfo(
                attempts=row["attempts"] + 1,
                crashes=row["crashes"] + crashed,
                last_error=CRASHED if crashed else (row["error"] or ""),
                retries=row["retries"],
            )
            self._db.execute(
                "UPDATE jobs SET status = 'running', attempts = ?, crashes = ?, error = ?, token = ?, "
                "worker = ?, frames_done = 0, updated_at = ? WHERE id = ?",
                (
                    info.attempts,
                    info.crashes,
                    info.last_error or None,
                    claim.token,
                    worker_id,
                    self._clock(),
                    claim.job_id,
                ),
            )
        return info

    async def progress(self, claim: Claim, done: int, total: int) -> bool:
        return self._owned_update(claim, "frames_done = ?, frames_total = ?", done, total)

    async def renew(self, claim: Claim) -> bool:
        return self._owned_update(claim, "token = token")

    async def finish(self, claim: Claim, video: bool) -> bool:
        return self._owned_update(
            claim,
            "status = 'done', error = NULL, result_path = ?, video_path = ?",
            str(self.data_dir / claim.result_name()),
            str(self.data_dir / claim.video_name()) if video else None,
        )

    async def fail(self, claim: Claim, error: str) -> bool:
        return self._owned_update(claim, "status = 'failed', error = ?", error)

    async def requeue(self, claim: Claim, error: str = "", *, charge: Charge = "attempt") -> bool:
        requeued = self._owned_update(
            claim,
            "status = 'queued', frames_done = 0, error = COALESCE(?, error), attempts = attempts - ?, "
            "retries = retries + ?",
            error or None,
            0 if charge == "attempt" else 1,
            1 if charge == "retry" else 0,
        )
        if requeued:
            self._fifo.put_nowait(claim.job_id)
        return requeued

    async def release(self, claim: Claim) -> None:
        """Nothing to let go of: the FIFO forgot the id when it was taken."""

    # -- internals -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    def _owned_update(self, claim: Claim, assignments: str, *values: Any) -> bool:
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? "
                "WHERE id = ? AND token = ? AND status = 'running'",
                (*values, self._clock(), claim.job_id, claim.token),
            )
            return cursor.rowcount == 1

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _record(row: sqlite3.Row) -> JobRecord:
    def as_path(value: str | None) -> Path | None:
        return None if value is None else Path(value)

    return JobRecord(
        id=row["id"],
        status=row["status"],
        model=row["model"],
        options=json.loads(row["options"]),
        input_path=as_path(row["input_path"]),
        frames_done=row["frames_done"],
        frames_total=row["frames_total"],
        error=row["error"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
        result_path=as_path(row["result_path"]),
        video_path=as_path(row["video_path"]),
        owner=row["owner"],
        attempts=row["attempts"],
        deleted=bool(row["deleted"]),
    )
