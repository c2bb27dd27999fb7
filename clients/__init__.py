"""Clients of the pose service: the Python SDK (sync and async), the command line, the browser page.

They speak only the HTTP and WebSocket protocol (``protocol``), never the server's internals.

    from clients import PoseClient

    with PoseClient("http://127.0.0.1:8000", api_key="...") as client:
        job = client.submit("clip.mp4")
        job.wait(progress=True)
        print(len(job.result().frames))
"""

from clients.aio import AsyncJob, AsyncPoseClient
from clients.client import Job, PoseClient
from clients.errors import (
    AuthError,
    BadRequest,
    JobFailed,
    PoseError,
    ServerError,
    ServerUnreachable,
    SourceError,
    StreamClosed,
    StreamError,
)
from clients.events import (
    FrameDropped,
    FrameResult,
    Reconnecting,
    StreamEnded,
    StreamEvent,
    StreamResumed,
    StreamStarted,
)
from clients.sources import Frame, FrameSource, open_source
from clients.streaming import StreamOptions

__all__ = [
    "AsyncJob",
    "AsyncPoseClient",
    "AuthError",
    "BadRequest",
    "Frame",
    "FrameDropped",
    "FrameResult",
    "FrameSource",
    "Job",
    "JobFailed",
    "PoseClient",
    "PoseError",
    "Reconnecting",
    "ServerError",
    "ServerUnreachable",
    "SourceError",
    "StreamClosed",
    "StreamEnded",
    "StreamError",
    "StreamEvent",
    "StreamOptions",
    "StreamResumed",
    "StreamStarted",
    "open_source",
]
