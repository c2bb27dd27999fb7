"""Video jobs in Redis: state in a hash per job, runs through a Stream with a consumer group.

A run of a job is a Stream entry. A worker takes entries with XREADGROUP, renews the ones it is
running (XCLAIM to itself, which resets their idle time), and acknowledges them when the run ends.
A worker that dies stops renewing: after ``job_claim_idle_s`` another worker takes the entry
over with XAUTOCLAIM and runs the job again.

Every run gets a fresh token written into the job's hash. Progress and the final transition
(Lua scripts, atomic in Redis) only apply while the hash still holds the run's token, and each
run writes its result to files named after its token: a run that lost its job (claimed by
another worker, cancelled) can neither finish it nor overwrite the winner's result. So a job
completes once and its results are never mixed. Attempts are counted when a run starts; past
``job_max_attempts`` the job fails with the last error.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from tdmi.service.cluster import keys
from tdmi.service.jobs.store import JobRecord

__all__ = ["ClusterJobs", "JobBoard", "Run"]

_JOB_ID = re.compile(r"[0-9a-f]{32}")

_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 'finished' end
redis.call('SREM', KEYS[2], ARGV[5])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[4]) then
  local last = redis.call('HGET', KEYS[1], 'error')
  if not last or last == '' then last = 'the worker running it stopped' end
  redis.call('HSET', KEYS[1], 'status', 'failed', 'updated_at', ARGV[3],
    'error', 'gave up after ' .. (attempts - 1) .. ' attempts; last: ' .. last)
  return 'exhausted'
end
redis.call('HSET', KEYS[1], 'status', 'running', 'token', ARGV[1], 'worker', ARGV[2],
  'frames_done', 0, 'updated_at', ARGV[3])
return 'ok'
"""

_OWNED = """
local function owned()
  return redis.call('HGET', KEYS[1], 'token') == ARGV[1]
    and redis.call('HGET', KEYS[1], 'status') == 'running'
end
"""

_PROGRESS = (
    _OWNED
    + """
if not owned() then return 0 end
redis.call('HSET', KEYS[1], 'frames_done', ARGV[2], 'frames_total', ARGV[3], 'updated_at', ARGV[4])
return 1
"""
)

_RENEW = (
    _OWNED
    + """
if not owned() then return 0 end
redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4], 'JUSTID')
return 1
"""
)

# ARGV: token, group, entry, status (done|failed), now, result, video, error
_FINISH = (
    _OWNED
    + """
if not owned() then
  if redis.call('HGET', KEYS[1], 'status') == 'cancelled' then
    redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
  end
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'result', ARGV[6], 'video', ARGV[7], 'error', ARGV[8],
  'updated_at', ARGV[5])
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
)

# ARGV: token, group, entry, now, error, refund (1: the run does not count), job id
_REQUEUE = (
    _OWNED
    + """
if not owned() then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'frames_done', 0, 'updated_at', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[7])
redis.call('SADD', KEYS[3], ARGV[7])
return 1
"""
)

_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""


class Run:
    """One worker's run of one job: the Stream entry it holds and its fencing token."""

    def __init__(self, job_id: str, entry_id: str, token: str):
        self.job_id, self.entry_id, self.token = job_id, entry_id, token

    def result_name(self) -> str:
        return f"results/{self.job_id}.{self.token}.json"

    def video_name(self) -> str:
        return f"videos/{self.job_id}.{self.token}.mp4"


class JobBoard:
    """The jobs' shared state and its transitions; files live under ``data_dir`` on shared storage."""

    def __init__(self, redis: Redis, data_dir: Path):
        self.redis = redis
        self.data_dir = Path(data_dir)
        for folder in ("uploads", "results", "videos"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self._start = redis.register_script(_START)
        self._progress = redis.register_script(_PROGRESS)
        self._renew = redis.register_script(_RENEW)
        self._finish = redis.register_script(_FINISH)
        self._requeue = redis.register_script(_REQUEUE)
        self._cancel = redis.register_script(_CANCEL)

    async def ensure_group(self) -> None:
        """The consumer group reads the Stream from its start, so jobs queued before any worker run."""
        try:
            await self.redis.xgroup_create(keys.JOBS_STREAM, keys.JOBS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- API side --------------------------------------------------------------------------------

    async def create(
        self, job_id: str, model: str, options: dict[str, Any], input_path: Path, frames_total: int
    ) -> None:
        now = repr(time.time())
        fields: dict[FieldT, EncodableT] = {
            "id": job_id,
            "status": "queued",
            "model": model,
            "options": json.dumps(options, sort_keys=True, allow_nan=False),
            "input": str(input_path.relative_to(self.data_dir)),
            "frames_done": 0,
            "frames_total": frames_total,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.job(job_id), mapping=fields)
            pipe.sadd(keys.JOBS_QUEUED, job_id)
            pipe.xadd(keys.JOBS_STREAM, {"job": job_id})
            await pipe.execute()

    async def get(self, job_id: str) -> JobRecord | None:
        if not _JOB_ID.fullmatch(job_id):
            return None
        fields: dict[bytes, bytes] = await self.redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
        return self._record({k.decode(): v.decode() for k, v in fields.items()}) if fields else None

    async def cancel(self, job_id: str) -> bool:
        return bool(await self._cancel(keys=[keys.job(job_id), keys.JOBS_QUEUED], args=[time.time(), job_id]))

    async def queued(self) -> int:
        return int(await self.redis.scard(keys.JOBS_QUEUED))

    # -- worker side -----------------------------------------------------------------------------

    async def start(self, run: Run, worker_id: str, max_attempts: int) -> str:
        """'ok' (the run owns the job), 'finished' (nothing to do) or 'exhausted' (now failed)."""
        answer = await self._start(
            keys=[keys.job(run.job_id), keys.JOBS_QUEUED],
            args=[run.token, worker_id, time.time(), max_attempts, run.job_id],
        )
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    async def progress(self, run: Run, done: int, total: int) -> bool:
        """False once the run no longer owns the job (cancelled, or claimed by another worker)."""
        return bool(
            await self._progress(keys=[keys.job(run.job_id)], args=[run.token, done, total, time.time()])
        )

    async def renew(self, run: Run, worker_id: str) -> bool:
        """Reset the entry's idle time so that no other worker claims a job that is still running."""
        return bool(
            await self._renew(
                keys=[keys.job(run.job_id), keys.JOBS_STREAM],
                args=[run.token, keys.JOBS_GROUP, worker_id, run.entry_id],
            )
        )

    async def finish(self, run: Run, *, result: str = "", video: str = "", error: str = "") -> bool:
        """Done (with result files) or failed for good (with ``error``); False if the run lost the job."""
        status = "failed" if error else "done"
        return bool(
            await self._finish(
                keys=[keys.job(run.job_id), keys.JOBS_STREAM],
                args=[run.token, keys.JOBS_GROUP, run.entry_id, status, time.time(), result, video, error],
            )
        )

    async def ack(self, entry_id: str) -> None:
        await self.redis.xack(keys.JOBS_STREAM, keys.JOBS_GROUP, entry_id)

    async def requeue(self, run: Run, error: str = "", *, counts: bool = True) -> bool:
        """Back to the queue as a new entry: after a failure, or after a clean stop (not ``counts``)."""
        return bool(
            await self._requeue(
                keys=[keys.job(run.job_id), keys.JOBS_STREAM, keys.JOBS_QUEUED],
                args=[
                    run.token,
                    keys.JOBS_GROUP,
                    run.entry_id,
                    time.time(),
                    error,
                    0 if counts else 1,
                    run.job_id,
                ],
            )
        )

    def _record(self, fields: dict[str, str]) -> JobRecord:
        def path(name: str) -> Path | None:
            return self.data_dir / fields[name] if fields.get(name) else None

        return JobRecord(
            id=fields["id"],
            status=fields["status"],  # type: ignore[arg-type]  # written only by this module
            model=fields["model"],
            options=json.loads(fields["options"]),
            input_path=path("input"),
            frames_done=int(fields.get("frames_done") or 0),
            frames_total=int(fields["frames_total"]) if fields.get("frames_total") else None,
            error=fields.get("error") or None,
            created_at=datetime.fromtimestamp(float(fields["created_at"]), UTC),
            updated_at=datetime.fromtimestamp(float(fields["updated_at"]), UTC),
            result_path=path("result"),
            video_path=path("video"),
        )


class ClusterJobs:
    """The API node's job system (``JobService``): submits to Redis, reads state any node wrote."""

    POLL_S = 0.2

    def __init__(self, board: JobBoard):
        self.board = board
        self.accepting = True

    def upload_path(self, job_id: str, suffix: str = "") -> Path:
        return self.board.data_dir / "uploads" / f"{job_id}{suffix}"

    async def queued(self) -> int:
        return await self.board.queued()

    async def submit(
        self, job_id: str, model: str, options: dict[str, Any], input_path: Path, frames_total: int
    ) -> JobRecord:
        await self.board.create(job_id, model, options, input_path, frames_total)
        record = await self.board.get(job_id)
        assert record is not None
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.board.get(job_id)

    async def wait(self, job_id: str) -> JobRecord:
        while True:
            record = await self.board.get(job_id)
            if record is None:
                raise KeyError(job_id)
            if record.finished:
                return record
            await asyncio.sleep(self.POLL_S)

    async def cancel(self, job_id: str) -> bool:
        return await self.board.cancel(job_id)
