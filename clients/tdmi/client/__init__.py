"""Clients of the pose service: the Python SDK (sync and async), the command line, the browser page.

They speak only the HTTP and WebSocket protocol (``protocol``), never the server's internals.
Jobs, models and status need only the base install; live sources, ``--render``/``--show`` and
overlay drawing need OpenCV and PyAV, imported on first use: the SDK's ``media`` extra
(``pip install './clients[media]'`` in a checkout, ``'tdmi-client[media]'`` from an index).

    from tdmi.client import PoseClient

    with PoseClient("http://127.0.0.1:8000", api_key="...") as client:
        job = client.submit("clip.mp4")
        job.wait(progress=True)
        print(len(job.result().frames))
        camera = client.sources.add("rtsp://192.168.1.20:554/stream1")  # the server pulls it
        for message in client.sources.watch(camera.source_id):  # results, status, dropped
            ...
"""

from tdmi.client.aio import AsyncJob, AsyncPoseClient
from tdmi.client.camera_sources import AsyncCameraSources, CameraSources, ViewerEvent
from tdmi.client.client import Job, PoseClient
from tdmi.client.errors import (
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
from tdmi.client.events import (
    FrameDropped,
    FrameResult,
    Reconnecting,
    StreamEnded,
    StreamEvent,
    StreamResumed,
    StreamStarted,
)
from tdmi.client.sources import Frame, FrameSource, open_source
from tdmi.client.streaming import StreamOptions
from tdmi.protocol.media import MediaUnavailable

__all__ = [
    "AsyncCameraSources",
    "AsyncJob",
    "AsyncPoseClient",
    "AuthError",
    "BadRequest",
    "CameraSources",
    "Frame",
    "FrameDropped",
    "FrameResult",
    "FrameSource",
    "Job",
    "JobFailed",
    "MediaUnavailable",
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
    "ViewerEvent",
    "open_source",
]
