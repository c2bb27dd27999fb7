"""Video jobs of the embedded mode: one SQLite table plus the files of each job under a data directory.

Layout of ``data_dir``: ``jobs.sqlite3`` (WAL mode, so readers never wait for the writer),
``uploads/<id><suffix>``, ``results/<id>.json``, ``videos/<id>.mp4``.

Status moves one way: ``queued -> running -> done | failed``, and ``cancelled`` from either of
the first two. Every transition is a conditional UPDATE that returns whether it happened, so a
worker learns of a cancel from ``update_progress`` returning False, and a late ``mark_done`` cannot
resurrect a cancelled job. One connection serves all threads behind a lock; each call is a
sub-millisecond statement, short enough to make from the event loop.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["FINISHED", "JobRecord", "JobStatus", "JobStore", "new_job_id", "write_json_atomic"]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[JobStatus] = frozenset({"done", "failed", "cancelled"})
_JOB_ID = re.compile(r"[0-9a-f]{32}")

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


def new_job_id() -> str:
    """A fresh job id (uuid4 hex), for when the upload must be saved before the job is created."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class JobRecord:
    """One job as stored. ``frames_total`` is None until known; times are UTC."""

    id: str
    status: JobStatus
    model: str
    options: dict[str, Any]
    input_path: Path | None
    frames_done: int
    frames_total: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    result_path: Path | None
    video_path: Path | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class JobStore:
    """The jobs table and the file layout of ``data_dir``; safe to share between threads."""

    def __init__(self, data_dir: str | Path, *, clock: Callable[[], float] = time.time):
        self.data_dir = Path(data_dir)
        for folder in ("uploads", "results", "videos"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "jobs.sqlite3"
        self._clock = clock
        self._lock = threading.Lock()
        # autocommit: single statements commit at once; multi-statement changes use _transaction()
        self._db = sqlite3.connect(self.db_path, timeout=10.0, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- files ---------------------------------------------------------------------------------

    def upload_path(self, job_id: str, suffix: str = "") -> Path:
        """Where the uploaded video of a job is kept; ``suffix`` keeps the client's extension."""
        if suffix and not re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix):
            raise ValueError(f"upload suffix must look like '.mp4', got {suffix!r}")
        return self.data_dir / "uploads" / f"{_checked_id(job_id)}{suffix}"

    def result_path(self, job_id: str) -> Path:
        return self.data_dir / "results" / f"{_checked_id(job_id)}.json"

    def video_path(self, job_id: str) -> Path:
        return self.data_dir / "videos" / f"{_checked_id(job_id)}.mp4"

    # -- rows ----------------------------------------------------------------------------------

    def create(
        self,
        model: str,
        options: dict[str, Any] | None = None,
        *,
        input_path: str | Path | None = None,
        frames_total: int | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """Queue a new job; ``options`` (boxes, lookahead, render, ...) must be JSON-serialisable."""
        job_id = _checked_id(job_id) if job_id is not None else new_job_id()
        try:
            options_json = json.dumps(options or {}, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"job options must be plain JSON: {exc}") from exc
        now = self._clock()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, status, model, options, input_path, frames_total, created_at, "
                "updated_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                (job_id, model, options_json, _text(input_path), frames_total, now, now),
            )
            record = self._get(job_id)
        assert record is not None  # inserted under the same lock
        return record

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._get(job_id)

    def list(self, status: JobStatus | None = None, limit: int | None = None) -> builtins.list[JobRecord]:
        """Jobs oldest first (the order a queue serves them), optionally of one status."""
        query, args = "SELECT * FROM jobs", builtins.list[Any]()
        if status is not None:
            query, args = query + " WHERE status = ?", [status]
        query += " ORDER BY created_at, rowid"
        if limit is not None:
            query, args = query + " LIMIT ?", [*args, limit]
        with self._lock:
            return [_record(row) for row in self._db.execute(query, args)]

    def mark_running(self, job_id: str, frames_total: int | None = None) -> bool:
        """Queued -> running. False if the job is gone, cancelled or already taken."""
        return self._transition(
            job_id, ("queued",), "status = 'running', frames_total = COALESCE(?, frames_total)", frames_total
        )

    def update_progress(self, job_id: str, frames_done: int, frames_total: int | None = None) -> bool:
        """Record progress of a running job. False means it is no longer running (cancelled): stop."""
        return self._transition(
            job_id,
            ("running",),
            "frames_done = ?, frames_total = COALESCE(?, frames_total)",
            frames_done,
            frames_total,
        )

    def mark_done(
        self, job_id: str, *, result_path: str | Path | None = None, video_path: str | Path | None = None
    ) -> bool:
        """Running -> done; False if the job was cancelled meanwhile.

        ``result_path`` defaults to :meth:`result_path`; ``video_path`` stays None without an overlay.
        """
        return self._transition(
            job_id,
            ("running",),
            "status = 'done', result_path = ?, video_path = ?",
            str(result_path or self.result_path(job_id)),
            _text(video_path),
        )

    def mark_failed(self, job_id: str, error: str) -> bool:
        """Queued or running -> failed, keeping ``error`` for the user."""
        return self._transition(job_id, ("queued", "running"), "status = 'failed', error = ?", error)

    def mark_cancelled(self, job_id: str) -> bool:
        """Queued or running -> cancelled. False if the job is unknown or already finished."""
        return self._transition(job_id, ("queued", "running"), "status = 'cancelled'")

    def requeue_interrupted(self) -> builtins.list[JobRecord]:
        """Jobs a stopped server left running go back to the queue (from frame 0); call at startup."""
        with self._lock, self._transaction():
            ids = [row["id"] for row in self._db.execute("SELECT id FROM jobs WHERE status = 'running'")]
            self._db.executemany(
                "UPDATE jobs SET status = 'queued', frames_done = 0, updated_at = ? WHERE id = ?",
                [(self._clock(), job_id) for job_id in ids],
            )
            rows = [
                self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone() for job_id in ids
            ]
        return [_record(row) for row in rows]

    def delete_finished_older_than(self, seconds: float) -> builtins.list[JobRecord]:
        """Forget finished jobs last updated more than ``seconds`` ago, with their files; returns them."""
        cutoff = self._clock() - seconds
        finished = ", ".join(f"'{status}'" for status in sorted(FINISHED))
        with self._lock, self._transaction():
            rows = self._db.execute(
                f"SELECT * FROM jobs WHERE status IN ({finished}) AND updated_at < ?", (cutoff,)
            ).fetchall()
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(row["id"],) for row in rows])
        deleted = [_record(row) for row in rows]
        for job in deleted:
            for path in (job.input_path, job.result_path, job.video_path):
                if path is not None:
                    path.unlink(missing_ok=True)
        return deleted

    # -- internals -----------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    def _transition(
        self, job_id: str, allowed: tuple[JobStatus, ...], assignments: str, *values: Any
    ) -> bool:
        placeholders = ", ".join("?" for _ in allowed)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ? AND status IN ({placeholders})",
                (*values, self._clock(), job_id, *allowed),
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


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON so readers see the old file or the whole new one, never a part (tmp file + rename)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(obj, file, separators=(",", ":"), allow_nan=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _checked_id(job_id: str) -> str:
    """Job ids reach file paths; only uuid4 hex passes, so a crafted id cannot leave the data dir."""
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"invalid job id {job_id!r}: expected 32 lowercase hex digits")
    return job_id


def _text(path: str | Path | None) -> str | None:
    return None if path is None else str(path)


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
    )
