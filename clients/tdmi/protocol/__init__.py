"""The wire contract of the pose service: pydantic messages shared by server and clients."""

from tdmi.protocol.jobs import (
    FINISHED,
    JOB_ID_PATTERN,
    ErrorPublic,
    JobCreatedPublic,
    JobLinks,
    JobProgress,
    JobPublic,
    JobResultPublic,
    JobStatus,
    ResultFormat,
    VideoPublic,
)
from tdmi.protocol.messages import HealthPublic, ModelPublic, ModelsPublic, SkeletonPublic
from tdmi.protocol.poses import FramePoses, PersonPose
from tdmi.protocol.sources import (
    SourceCreate,
    SourceCreated,
    SourceInfo,
    SourceLinks,
    SourceList,
    SourceStatus,
    SourceStatusMessage,
    ViewerDroppedMessage,
    ViewerMessage,
)
from tdmi.protocol.workers import WorkerModelPublic, WorkerPublic, WorkersPublic

__all__ = [
    "FINISHED",
    "JOB_ID_PATTERN",
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
    "ResultFormat",
    "SkeletonPublic",
    "SourceCreate",
    "SourceCreated",
    "SourceInfo",
    "SourceLinks",
    "SourceList",
    "SourceStatus",
    "SourceStatusMessage",
    "VideoPublic",
    "ViewerDroppedMessage",
    "ViewerMessage",
    "WorkerModelPublic",
    "WorkerPublic",
    "WorkersPublic",
]
