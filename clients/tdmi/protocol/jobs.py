"""Bodies of the video-job API (``/v1/pose``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tdmi.protocol.messages import SkeletonPublic
from tdmi.protocol.poses import FramePoses

__all__ = [
    "FINISHED",
    "JOB_ID_PATTERN",
    "ErrorPublic",
    "JobBoxes",
    "JobCreatedPublic",
    "JobLinks",
    "JobProgress",
    "JobPublic",
    "JobResultPublic",
    "JobStatus",
    "ResultFormat",
    "VideoPublic",
]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
# a job in one of these stays in it: its result, error or cancellation is final
FINISHED: frozenset[JobStatus] = frozenset({"done", "failed", "cancelled"})
# a job id: uuid4 hex, so that one can name files on the server and nothing else
JOB_ID_PATTERN = r"[0-9a-f]{32}"
# the formats of a finished job's result (``GET /v1/pose/{id}/result?format=``)
ResultFormat = Literal["json", "posetrack", "coco"]

# Boxes a client gives for a video job: frame index (as a string, JSON object keys) -> boxes,
# each [x1, y1, x2, y2] or [x1, y1, x2, y2, score].
JobBoxes = dict[str, list[list[float]]]


class ErrorPublic(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: str = Field(description="short machine-readable kind, e.g. unsupported_media")
    detail: str = Field(description="what was wrong, in one sentence")


class JobLinks(BaseModel):
    self: str
    result: str
    video: str | None = Field(description="overlay video, when the job renders one")


class JobProgress(BaseModel):
    """Frames done of the total (None until known); while the job runs, its speed and the time
    left at that speed, once two progress updates have been seen (None before)."""

    frames_done: int
    frames_total: int | None
    frames_per_second: float | None = None
    eta_seconds: float | None = None


class JobPublic(BaseModel):
    """Where a job stands."""

    job_id: str
    status: JobStatus
    model: str
    progress: JobProgress
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    links: JobLinks


class JobCreatedPublic(BaseModel):
    job_id: str
    status: JobStatus
    links: JobLinks


class VideoPublic(BaseModel):
    """The video as read: its size as displayed (turned as its display matrix asks), the number of
    frames with results, and which stream of the file they came from."""

    width: int
    height: int
    fps: float
    frames: int
    stream: int = Field(
        default=0,
        description="index of the video stream read among the file's streams: the default video "
        "stream if the file marks one, else the largest",
    )
    rotation: int = Field(
        default=0,
        description="degrees clockwise the stored frames were turned to be upright (0, 90, 180, 270)",
    )
    corrupt_frames: int = Field(
        default=0, description="frames skipped because they did not decode (TDMI_MAX_CORRUPT_FRAMES at most)"
    )


class JobResultPublic(BaseModel):
    """A finished job: per-frame poses in frame order (``format=json``)."""

    job_id: str
    model: str
    video: VideoPublic
    skeleton: SkeletonPublic
    frames: list[FramePoses]
