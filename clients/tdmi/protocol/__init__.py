"""The wire contract of the pose service: pydantic messages shared by server and clients."""

from tdmi.protocol.jobs import (
    ErrorPublic,
    JobCreatedPublic,
    JobLinks,
    JobProgress,
    JobPublic,
    JobResultPublic,
    JobStatus,
    VideoPublic,
)
from tdmi.protocol.messages import HealthPublic, ModelPublic, ModelsPublic, SkeletonPublic
from tdmi.protocol.poses import FramePoses, PersonPose
from tdmi.protocol.workers import WorkerModelPublic, WorkerPublic, WorkersPublic

__all__ = [
    "ErrorPublic",
    "FramePoses",
    "HealthPublic",
    "JobCreatedPublic",
    "JobLinks",
    "JobProgress",
    "JobPublic",
    "JobResultPublic",
    "JobStatus",
    "ModelPublic",
    "ModelsPublic",
    "PersonPose",
    "SkeletonPublic",
    "VideoPublic",
    "WorkerModelPublic",
    "WorkerPublic",
    "WorkersPublic",
]
