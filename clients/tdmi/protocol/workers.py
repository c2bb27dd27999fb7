"""``GET /v1/workers``: the inference workers of a deployment and their load."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["WorkerModelPublic", "WorkerPublic", "WorkersPublic"]


class WorkerModelPublic(BaseModel):
    name: str
    checkpoint: str | None = Field(description="file name of the weights; None: untrained")
    joints: str | None = Field(
        default=None,
        description="joint layout the worker labels keypoints with (its checkpoint may declare one "
        "other than the preset's); None from workers older than this field",
    )


class WorkerPublic(BaseModel):
    worker_id: str
    device: str
    backend: str
    models: list[WorkerModelPublic]
    streams: int = Field(description="live streams pinned to this worker")
    max_streams: int
    jobs: int = Field(description="video jobs running")
    max_jobs: int
    queue_depth: int = Field(description="frames waiting in its batchers")
    frames: int = Field(description="frames answered since start (jobs and live)")
    batches: dict[str, int] = Field(
        description="batch size histogram: upper bound of the bucket (clips) -> batches, cumulative"
    )
    started_at: float = Field(description="Unix time")
    heartbeat_at: float = Field(description="Unix time of this report")


class WorkersPublic(BaseModel):
    mode: str = Field(description="embedded: the API node is its own worker; cluster: workers over Redis")
    workers: list[WorkerPublic]
