"""A job as both job queues store it (SQLite, Redis), and the file helpers they share.

Files of a job under ``data_dir``: ``uploads/<id><suffix>``, and per run ``results/<id>.<token>.json``
and ``videos/<id>.<token>.mp4``. Status moves one way: ``queued -> running -> done | failed``,
``cancelled`` from either of the first two, and ``running -> queued`` when a run is given back.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tdmi.protocol.jobs import FINISHED, JOB_ID_PATTERN, JobStatus

__all__ = [
    "JobRecord",
    "checked_id",
    "is_job_id",
    "new_job_id",
    "options_json",
    "remove_files",
    "upload_path",
    "write_json_atomic",
]

_JOB_ID = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    """A fresh job id (uuid4 hex), for when the upload must be saved before the job is created."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class JobRecord:
    """One job as stored. ``frames_total`` is None until known; times are UTC. ``owner`` is the id
    of the API key that created it (never the key), None in open mode; ``deleted`` means a DELETE
    is waiting for the job's run to stop."""

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
    owner: str | None = None
    attempts: int = 0
    deleted: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def files(self) -> list[Path]:
        return [p for p in (self.input_path, self.result_path, self.video_path) if p is not None]


def upload_path(data_dir: Path, job_id: str, suffix: str = "") -> Path:
    """Where the uploaded video of a job is kept; ``suffix`` keeps the client's extension."""
    if suffix and not re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix):
        raise ValueError(f"upload suffix must look like '.mp4', got {suffix!r}")
    return data_dir / "uploads" / f"{checked_id(job_id)}{suffix}"


def options_json(options: dict[str, Any]) -> str:
    try:
        return json.dumps(options, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job options must be plain JSON: {exc}") from exc


def remove_files(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


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


def is_job_id(job_id: str) -> bool:
    """Whether ``job_id`` is one this service could have given (uuid4 hex)."""
    return _JOB_ID.fullmatch(job_id) is not None


def checked_id(job_id: str) -> str:
    """Job ids reach file paths; only uuid4 hex passes, so a crafted id cannot leave the data dir."""
    if not is_job_id(job_id):
        raise ValueError(f"invalid job id {job_id!r}: expected 32 lowercase hex digits")
    return job_id
