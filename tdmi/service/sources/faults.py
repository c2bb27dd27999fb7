"""Why a connection to a camera failed, in words its owner can act on.

FFmpeg's error kinds are coarse: an RTSP camera that closes the connection at once and one that
answers in another protocol both give "invalid data", and so does an open that PyAV's timeout
cut short while FFmpeg was waiting for an answer. The class of a fault is therefore read from
three things together: the error's errno or FFmpeg kind, whether the stream had opened (the
camera answered FFmpeg's requests) and how many packets came since, and how long the step took
against its time limit. The words are built from these alone, never from the exception's
string: FFmpeg's messages name the URL, credentials included.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import av

from tdmi.service.logs import redact as redact_text

__all__ = ["Attempt", "connection_error"]

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_CLOSED = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


@dataclass(frozen=True)
class Attempt:
    """What is known of one connection when it failed."""

    opened: bool  # FFmpeg opened the stream: the camera answered its requests
    packets: int  # packets read since it opened
    waited_s: float  # opening: since the open began; streaming: since the last frame


def connection_error(
    exc: av.FFmpegError | OSError, attempt: Attempt, connect_s: float, stall_s: float
) -> str:
    """The public message for a failed connection (``connect_s``: the open's limit, ``stall_s``:
    the longest wait for a frame while streaming)."""
    if isinstance(exc, av.HTTPClientError | av.HTTPServerError):
        return _refusal(exc)
    code = exc.errno
    if code == errno.ECONNREFUSED:
        return "the camera refused the connection (nothing listens on that port)"
    if code in _UNREACHABLE:
        return "the camera's host cannot be reached from the server (no route to it)"
    limit_s = stall_s if attempt.opened else connect_s
    if code == errno.ETIMEDOUT or isinstance(exc, av.ExitError) or attempt.waited_s >= limit_s:
        # ExitError: PyAV's own time limit interrupted FFmpeg; a timed-out wait for an answer may
        # also surface as whatever FFmpeg was doing then (often "invalid data")
        if attempt.opened:
            return f"no frame from the camera for {stall_s:g} s"
        return f"no answer from the camera within {connect_s:g} s"
    if code in _CLOSED or isinstance(exc, av.EOFError):
        if attempt.opened:
            return "the camera closed the connection"
        return "the camera closed the connection before sending a stream"
    if isinstance(exc, av.InvalidDataError):
        if attempt.opened:
            return "the camera's stream turned into data FFmpeg cannot read"
        # a closed connection and an answer in another protocol read the same to FFmpeg here
        return (
            "the camera closed the connection at once or answered with something that is not a "
            "video stream FFmpeg can read (is it the camera's port and path?)"
        )
    doing = "the connection failed" if attempt.opened else "cannot connect"
    return f"{doing}: {redact_text(str(exc.strerror or type(exc).__name__))}"


def _refusal(exc: av.FFmpegError) -> str:
    """An answer of the camera's HTTP or RTSP server that says no."""
    if isinstance(exc, av.HTTPUnauthorizedError):
        return "the camera refused the credentials (401)"
    if isinstance(exc, av.HTTPForbiddenError):
        return "the camera refused access (403)"
    if isinstance(exc, av.HTTPNotFoundError):
        return "the camera has no stream at that path (404)"
    # FFmpeg's text here is "Server returned <status>", without the URL; redacted all the same
    return f"the camera answered with an error ({redact_text(str(exc.strerror))})"
