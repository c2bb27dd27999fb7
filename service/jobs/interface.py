"""What the HTTP layer needs of a job system; embedded (SQLite) and scale-out (Redis) both provide it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tdmi.service.jobs.store import JobRecord

__all__ = ["JobService"]


class JobService(Protocol):
    accepting: bool

    def upload_path(self, job_id: str, suffix: str = "") -> Path:
        """Where an upload is saved before its job exists (shared storage in scale-out mode)."""
        ...

    async def queued(self) -> int: ...

    async def submit(
        self, job_id: str, model: str, options: dict[str, Any], input_path: Path, frames_total: int
    ) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def wait(self, job_id: str) -> JobRecord:
        """Until the job is done, failed or cancelled."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """False if the job had already finished."""
        ...
