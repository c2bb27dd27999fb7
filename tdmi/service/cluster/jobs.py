"""The cluster's job queue (``JobQueue`` over Redis): a hash per job, runs through a Stream.

A run of a job is a Stream entry. A worker takes entries with XREADGROUP, renews the ones it is
running (XCLAIM to itself, which resets their idle time), and acknowledges them when the run ends.
A worker that dies stops renewing: after ``job_claim_idle_s`` another worker takes the entry
over with XAUTOCLAIM and runs the job again; its ``start`` finds the job still ``running`` and
counts the lost run as a crash. A Redis that comes back without its data has no consumer group:
the first ``take`` that meets NOGROUP creates it again and takes from it; the queue goes on.

Every run's fresh token is written into the job's hash. Progress and the final transitions (Lua
scripts, atomic in Redis) only apply while the hash still holds the run's token, and each run
writes its result to files named after its token: a run that lost its job (claimed by another
worker, cancelled) can neither finish it nor overwrite the winner's result.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from tdmi.protocol.jobs import FINISHED
from tdmi.service.cluster import keys
from tdmi.service.cluster.connection import BLOCK_MS
from tdmi.service.faults import is_missing_group
from tdmi.service.jobs.queue import CRASHED, Charge, Claim, Deletion, NewJob, StartInfo
from tdmi.service.jobs.store import JobRecord, checked_id, is_job_id, options_json

__all__ = ["RedisJobQueue"]

log = logging.getLogger("tdmi.cluster")


# ARGV: token, worker, now, job id, crash error -> {attempts, crashes, last error, retries} or nil
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return nil end
redis.call('SREM', KEYS[2], ARGV[4])
local crashes = tonumber(redis.call('HGET', KEYS[1], 'crashes') or '0')
if status == 'running' then
  crashes = crashes + 1
  redis.call('HSET', KEYS[1], 'crashes', crashes, 'error', ARGV[5])
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'token', ARGV[1], 'worker', ARGV[2],
  'frames_done', 0, 'updated_at', ARGV[3])
return {attempts, crashes, redis.call('HGET', KEYS[1], 'error') or '',
  tonumber(redis.call('HGET', KEYS[1], 'retries') or '0')}
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
if not owned() then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'result', ARGV[6], 'video', ARGV[7], 'error', ARGV[8],
  'updated_at', ARGV[5])
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
)

# ARGV: token, group, entry, now, error, refund (1: the run does not count), job id,
# retry (1: a transient fault's retry)
_REQUEUE = (
    _OWNED
    + """
if not owned() then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'frames_done', 0, 'updated_at', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
if ARGV[8] == '1' then redis.call('HINCRBY', KEYS[1], 'retries', 1) end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[7])
redis.call('SADD', KEYS[3], ARGV[7])
return 1
"""
)

# ARGV: token, group, entry: acknowledge a run's entry unless another run (a rescuer that
# claimed the same entry) now owns the job
_RELEASE = """
if redis.call('HGET', KEYS[1], 'status') == 'running' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
  return 0
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# ARGV: now, job id -> the status it had, or nil if finished
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return nil end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
return status
"""

# ARGV: now, job id, finished before ('' for any) -> {outcome, field, value, ...} or nil
_DELETE = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return nil end
local status = redis.call('HGET', KEYS[1], 'status')
if ARGV[3] ~= '' then
  if status == 'queued' or status == 'running' then return nil end
  if tonumber(redis.call('HGET', KEYS[1], 'updated_at')) >= tonumber(ARGV[3]) then return nil end
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'deleted', 1, 'updated_at', ARGV[1])
  table.insert(fields, 1, 'deferred')
  return fields
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
table.insert(fields, 1, 'deleted')
return fields
"""


class RedisJobQueue:
    """``JobQueue`` shared by API nodes and workers; files live under ``data_dir`` on shared storage.

    ``consumer`` is the worker id runs are taken for; ``claim_idle_s`` is how long a run may go
    unrenewed before another worker claims it.
    """

    def __init__(self, redis: Redis, data_dir: Path, consumer: str, claim_idle_s: float):
        self.redis = redis
        self.data_dir = Path(data_dir)
        self.consumer, self.claim_idle_ms = consumer, int(claim_idle_s * 1000)
        for folder in ("uploads", "results", "videos"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self._start = redis.register_script(_START)
        self._progress = redis.register_script(_PROGRESS)
        self._renew = redis.register_script(_RENEW)
        self._finish = redis.register_script(_FINISH)
        self._requeue = redis.register_script(_REQUEUE)
        self._cancel = redis.register_script(_CANCEL)
        self._delete = redis.register_script(_DELETE)
        self._release = redis.register_script(_RELEASE)
        self._grouped = False  # a take has found the consumer group

    async def _create_group(self) -> None:
        """The consumer group reads the Stream from its start, so jobs queued before any worker run."""
        try:
            await self.redis.xgroup_create(keys.JOBS_STREAM, keys.JOBS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def close(self) -> None:
        """The connection belongs to the node, which closes it."""

    # -- API side --------------------------------------------------------------------------------

    async def create(self, job: NewJob) -> JobRecord:
        now = repr(time.time())
        fields: dict[FieldT, EncodableT] = {
            "id": checked_id(job.job_id),
            "status": "queued",
            "model": job.model,
            "options": options_json(job.options),
            "input": str(job.input_path.relative_to(self.data_dir)),
            "frames_done": 0,
            "frames_total": job.frames_total,
            "attempts": 0,
            "crashes": 0,
            "owner": job.owner or "",
            "created_at": now,
            "updated_at": now,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.job(job.job_id), mapping=fields)
            pipe.sadd(keys.JOBS_QUEUED, job.job_id)
            pipe.xadd(keys.JOBS_STREAM, {"job": job.job_id})
            await pipe.execute()
        record = await self.get(job.job_id)
        assert record is not None
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        if not is_job_id(job_id):
            return None
        fields: dict[bytes, bytes] = await self.redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
        return self._record({k.decode(): v.decode() for k, v in fields.items()}) if fields else None

    async def queued(self) -> int:
        return int(await self.redis.scard(keys.JOBS_QUEUED))

    async def cancel(self, job_id: str) -> str | None:
        answer = await self._cancel(keys=[keys.job(job_id), keys.JOBS_QUEUED], args=[time.time(), job_id])
        return answer.decode() if answer else None

    async def delete(self, job_id: str, finished_before: float | None = None) -> Deletion | None:
        if not is_job_id(job_id):
            return None
        cutoff = "" if finished_before is None else repr(finished_before)
        answer = await self._delete(
            keys=[keys.job(job_id), keys.JOBS_QUEUED], args=[time.time(), job_id, cutoff]
        )
        if not answer:
            return None
        outcome, *flat = (value.decode() for value in answer)
        record = self._record(dict(zip(flat[::2], flat[1::2], strict=True)))
        return Deletion("deferred" if outcome == "deferred" else "deleted", record)

    async def finished_ids(self, before: float) -> builtins.list[str]:
        found = []
        async for key in self.redis.scan_iter(match=keys.job("*"), count=500):
            status, updated = await self.redis.hmget(key, ["status", "updated_at"])  # type: ignore[misc]
            if not isinstance(status, bytes) or not isinstance(updated, bytes):
                continue  # deleted meanwhile
            if status.decode() in FINISHED and float(updated) < before:
                found.append(key.decode().rsplit(":", 1)[1])
        return found

    # -- runner side ---------------------------------------------------------------------------

    async def take(self) -> Claim | None:
        try:
            claim = await self._take()
        except ResponseError as exc:
            if not is_missing_group(exc):
                raise
            await self._create_group()
            if self._grouped:  # it was there: Redis restarted without its data, or lost it
                log.warning("job queue: consumer group %r was missing; created again", keys.JOBS_GROUP)
            claim = await self._take()
        self._grouped = True
        return claim

    async def _take(self) -> Claim | None:
        claimed: list[Any]
        _, claimed, _ = await self.redis.xautoclaim(
            keys.JOBS_STREAM, keys.JOBS_GROUP, self.consumer, self.claim_idle_ms, start_id="0-0", count=1
        )
        if claimed:
            entry_id, fields = claimed[0]
            return Claim(fields[b"job"].decode(), entry_id.decode())
        answer: Any = await self.redis.xreadgroup(
            keys.JOBS_GROUP, self.consumer, {keys.JOBS_STREAM: ">"}, count=1, block=BLOCK_MS
        )
        for _, entries in answer or []:
            for entry_id, fields in entries:
                return Claim(fields[b"job"].decode(), entry_id.decode())
        return None

    async def start(self, claim: Claim, worker_id: str) -> StartInfo | None:
        answer = await self._start(
            keys=[keys.job(claim.job_id), keys.JOBS_QUEUED],
            args=[claim.token, worker_id, time.time(), claim.job_id, CRASHED],
        )
        if not answer:
            return None
        attempts, crashes, last_error, retries = answer
        return StartInfo(int(attempts), int(crashes), last_error.decode(), int(retries))

    async def progress(self, claim: Claim, done: int, total: int) -> bool:
        return bool(
            await self._progress(keys=[keys.job(claim.job_id)], args=[claim.token, done, total, time.time()])
        )

    async def renew(self, claim: Claim) -> bool:
        """Reset the entry's idle time so that no other worker claims a job that is still running."""
        return bool(
            await self._renew(
                keys=[keys.job(claim.job_id), keys.JOBS_STREAM],
                args=[claim.token, keys.JOBS_GROUP, self.consumer, claim.entry_id],
            )
        )

    async def finish(self, claim: Claim, video: bool) -> bool:
        return await self._end(claim, "done", claim.result_name(), claim.video_name() if video else "", "")

    async def fail(self, claim: Claim, error: str) -> bool:
        return await self._end(claim, "failed", "", "", error)

    async def requeue(self, claim: Claim, error: str = "", *, charge: Charge = "attempt") -> bool:
        return bool(
            await self._requeue(
                keys=[keys.job(claim.job_id), keys.JOBS_STREAM, keys.JOBS_QUEUED],
                args=[
                    claim.token,
                    keys.JOBS_GROUP,
                    claim.entry_id,
                    time.time(),
                    error,
                    0 if charge == "attempt" else 1,
                    claim.job_id,
                    1 if charge == "retry" else 0,
                ],
            )
        )

    async def release(self, claim: Claim) -> None:
        await self._release(
            keys=[keys.job(claim.job_id), keys.JOBS_STREAM],
            args=[claim.token, keys.JOBS_GROUP, claim.entry_id],
        )

    async def _end(self, claim: Claim, status: str, result: str, video: str, error: str) -> bool:
        return bool(
            await self._finish(
                keys=[keys.job(claim.job_id), keys.JOBS_STREAM],
                args=[
                    claim.token,
                    keys.JOBS_GROUP,
                    claim.entry_id,
                    status,
                    time.time(),
                    result,
                    video,
                    error,
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
            owner=fields.get("owner") or None,
            attempts=int(fields.get("attempts") or 0),
            deleted=fields.get("deleted") == "1",
        )
