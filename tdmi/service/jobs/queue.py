"""The job queue's contract, one for both storages: SQLite in one process, Redis for a cluster.

A *run* is one attempt at a job. The runner takes a run (``take``), starts it (``start``, which
counts the attempt before any work is done), reports progress, and ends it exactly once: done
(``finish``), failed for good (``fail``), back to the queue (``requeue``, charged as a used
attempt, a transient retry, or nothing), or given up because the job was cancelled or taken over
(``release``). Every call after ``start`` is fenced by the run's
token: a run that lost its job (cancelled, deleted, claimed by another worker) can no longer
change it, and ``progress`` answers False so that it stops.

A run that never ended (its process was killed, e.g. by a native crash) leaves its job
``running``; the next ``start`` of that job counts it as a crash. So a job that kills its worker
is failed after ``job_max_attempts`` runs instead of killing every restart (the poison-job guard).
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tdmi.service.jobs.store import JobRecord

__all__ = ["CRASHED", "Charge", "Claim", "Deletion", "JobQueue", "NewJob", "StartInfo"]

# the error a run leaves when its process died before it could end it
CRASHED = "the worker stopped while running the job"

# what a run given back costs its job: an attempt (it failed), a retry (a transient fault of the
# server, bounded apart from the attempts), or nothing (a clean stop)
Charge = Literal["attempt", "retry", "none"]


@dataclass(frozen=True)
class Claim:
    """One run of one job: the queue entry it holds (Redis; empty in SQLite) and its fencing token."""

    job_id: str
    entry_id: str = ""
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def result_name(self) -> str:
        """Each run writes its own files, so a run that lost its job never overwrites the winner's."""
        return f"results/{self.job_id}.{self.token}.json"

    def video_name(self) -> str:
        return f"videos/{self.job_id}.{self.token}.mp4"


@dataclass(frozen=True)
class NewJob:
    """A job to queue: its upload is saved already; ``owner`` is the creating key's id (or None)."""

    job_id: str
    model: str
    options: dict[str, Any]
    input_path: Path
    frames_total: int
    owner: str | None


@dataclass(frozen=True)
class StartInfo:
    """What ``start`` counted: attempts including this run, how many earlier runs crashed, the
    last error an earlier run left, and how many runs were given back after a transient fault."""

    attempts: int
    crashes: int
    last_error: str
    retries: int = 0


@dataclass(frozen=True)
class Deletion:
    """What ``delete`` did: ``deferred`` when a run still holds the job (it was cancelled, and the
    runner removes it with its files once the run has stopped), ``deleted`` when it is gone."""

    outcome: Literal["deleted", "deferred"]
    record: JobRecord


class JobQueue(Protocol):
    """Where jobs wait and what their runs may do to them; SQLite and Redis implement it alike."""

    data_dir: Path

    # -- API side --------------------------------------------------------------------------------

    async def create(self, job: NewJob) -> JobRecord: ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The job, also while it is being deleted (``record.deleted``); None for unknown ids."""
        ...

    async def queued(self) -> int: ...

    async def cancel(self, job_id: str) -> str | None:
        """Queued or running -> cancelled; answers the status it had, None if it had finished."""
        ...

    async def delete(self, job_id: str, finished_before: float | None = None) -> Deletion | None:
        """Forget the job (its files are the caller's to remove). A running job is cancelled and
        marked deleted instead. With ``finished_before`` (a UNIX time) only a job that finished
        before it goes. None when nothing was deleted."""
        ...

    async def finished_ids(self, before: float) -> builtins.list[str]:
        """Ids of jobs that finished before ``before`` (candidates for retention)."""
        ...

    # -- runner side ---------------------------------------------------------------------------

    async def take(self) -> Claim | None:
        """The next run: first one whose worker went silent (Redis), else a new one; waits up to
        about a second, None if there was nothing. A Redis that lost the consumer group (it came
        back empty) gets it again here."""
        ...

    async def start(self, claim: Claim, worker_id: str) -> StartInfo | None:
        """Count the attempt and make the run own the job; None when the job has nothing to run
        (finished, cancelled, deleted)."""
        ...

    async def progress(self, claim: Claim, done: int, total: int) -> bool: ...

    async def renew(self, claim: Claim) -> bool:
        """Tell other workers the run is alive; False once it lost the job."""
        ...

    async def finish(self, claim: Claim, video: bool) -> bool:
        """Done, with the run's result (and overlay) files; False if the run lost the job."""
        ...

    async def fail(self, claim: Claim, error: str) -> bool: ...

    async def requeue(self, claim: Claim, error: str = "", *, charge: Charge = "attempt") -> bool:
        """Back to the queue after ``error``; unless ``charge`` is ``attempt``, the run's attempt
        is refunded (``retry`` counts a retry instead)."""
        ...

    async def release(self, claim: Claim) -> None:
        """Let go of a run that has nothing more to do with its job."""
        ...

    def close(self) -> None: ...
