"""Workers announce themselves with a heartbeat; API nodes read who is alive and how loaded."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from tdmi.protocol import WorkerModelPublic, WorkerPublic
from tdmi.service.cluster import keys
from tdmi.service.config import Settings
from tdmi.service.inference.runtime import InferenceRuntime
from tdmi.service.metrics import ServiceMetrics

__all__ = ["Registry", "least_loaded", "snapshot"]


class Registry:
    def __init__(self, redis: Redis, ttl_s: float):
        self.redis, self.ttl_ms = redis, int(ttl_s * 1000)

    async def publish(self, report: WorkerPublic) -> None:
        """Say the worker is alive for the next ``ttl_s``, with its load."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.worker(report.worker_id), report.model_dump_json(), px=self.ttl_ms)
            pipe.sadd(keys.WORKERS, report.worker_id)
            await pipe.execute()

    async def withdraw(self, worker_id: str) -> None:
        """A worker that stops cleanly leaves at once instead of after its TTL."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.worker(worker_id))
            pipe.srem(keys.WORKERS, worker_id)
            await pipe.execute()

    async def alive(self, worker_id: str) -> bool:
        return bool(await self.redis.exists(keys.worker(worker_id)))

    async def live(self) -> list[WorkerPublic]:
        """The workers whose heartbeat has not expired, by id; expired ones are pruned."""
        members: set[bytes] = await self.redis.smembers(keys.WORKERS)  # type: ignore[assignment]
        ids = sorted(member.decode() for member in members)
        if not ids:
            return []
        reports = await self.redis.mget([keys.worker(worker_id) for worker_id in ids])
        dead = [worker_id for worker_id, report in zip(ids, reports, strict=True) if report is None]
        if dead:
            await self.redis.srem(keys.WORKERS, *dead)
        return [WorkerPublic.model_validate_json(report) for report in reports if report is not None]


def least_loaded(
    workers: list[WorkerPublic], model: str | None, exclude: frozenset[str] = frozenset()
) -> WorkerPublic | None:
    """Where a new live stream goes: fewest streams, then the shortest queue, then fewest jobs."""
    fits = [
        w
        for w in workers
        if w.worker_id not in exclude
        and w.streams < w.max_streams
        and (model is None or any(m.name == model for m in w.models))
    ]
    return min(fits, key=lambda w: (w.streams, w.queue_depth, w.jobs, w.worker_id), default=None)


def snapshot(
    worker_id: str,
    settings: Settings,
    runtime: InferenceRuntime,
    metrics: ServiceMetrics,
    *,
    streams: int,
    jobs: int,
    started_at: float,
) -> WorkerPublic:
    """A worker's report: also what ``GET /v1/workers`` shows for the embedded mode's own worker."""
    depth = sum(runtime.queue_depths().values())
    return WorkerPublic(
        worker_id=worker_id,
        device=settings.device,
        backend=settings.model_backend,
        models=[
            WorkerModelPublic(
                name=m.name,
                checkpoint=m.checkpoint.name if m.checkpoint else None,
                joints=m.preset.layout.name,
            )
            for m in runtime.models.values()
        ],
        streams=streams,
        max_streams=settings.max_streams,
        jobs=jobs,
        max_jobs=settings.max_running_jobs,
        queue_depth=depth,
        frames=int(_total(metrics, "tdmi_frames_total")),
        batches=_buckets(metrics),
        started_at=started_at,
        heartbeat_at=time.time(),
    )


def _total(metrics: ServiceMetrics, sample_name: str) -> float:
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == sample_name
    )


def _buckets(metrics: ServiceMetrics) -> dict[str, int]:
    return {
        sample.labels["le"]: int(sample.value)
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "tdmi_batch_size_clips_bucket"
    }
