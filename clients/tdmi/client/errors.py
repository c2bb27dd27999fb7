"""Exceptions of the SDK: each carries what the server said, so callers can show it as it is.

The hierarchy follows what a caller can do about an error: retry later (``ServerUnreachable``),
fix the key (``AuthError``), fix the input (``BadRequest``), look at the job (``JobFailed``).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadRequest",
    "JobFailed",
    "PoseError",
    "ServerError",
    "ServerUnreachable",
    "SourceError",
    "StreamClosed",
    "StreamError",
]


class PoseError(Exception):
    """Base of every error the SDK raises."""


class ServerUnreachable(PoseError):
    """No answer from the server: wrong URL, server down, network failure."""


class ServerError(PoseError):
    """The server answered with an error: ``status`` (HTTP, or 0 on a WebSocket), ``kind``, ``detail``."""

    def __init__(self, status: int, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}" if kind else detail)
        self.status, self.kind, self.detail = status, kind, detail


class AuthError(ServerError):
    """Missing or wrong API key (HTTP 401, WebSocket close 1008)."""


class BadRequest(ServerError):
    """The server refused the input (HTTP 4xx other than 401): bad file, unknown model, ..."""


class JobFailed(PoseError):
    """A job ended as ``failed`` or ``cancelled``; ``job`` is its last status (a ``JobPublic``)."""

    def __init__(self, job: object, message: str):
        super().__init__(message)
        self.job = job


class StreamError(ServerError):
    """An ``error`` message on a live stream (``frame_id`` set when it is about one frame)."""

    def __init__(self, kind: str, detail: str, frame_id: int | None = None):
        super().__init__(0, kind, detail)
        self.frame_id = frame_id


class StreamClosed(PoseError):
    """The server closed a live stream for a reason a reconnection does not fix (``code``, ``reason``)."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"stream closed ({code}): {reason}" if reason else f"stream closed ({code})")
        self.code, self.reason = code, reason


class SourceError(PoseError):
    """A local input cannot be used: a missing video file, a camera or URL that does not open,
    an iterator that gives something other than an image."""
