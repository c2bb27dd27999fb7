"""A failed camera connection's public message, by class: the error's kind, whether the stream had
opened and how long the step took; never the exception's text, which names the URL."""

from __future__ import annotations

import errno

import av
import pytest

from tdmi.service.sources.faults import Attempt, connection_error

URL = "rtsp://viewer:s3cret@10.0.0.9/cam"  # what FFmpeg's exceptions carry as their file name
INVALID = av.InvalidDataError(-1094995529, "Invalid data found when processing input", URL)
OPENING_QUICKLY = Attempt(opened=False, packets=0, waited_s=0.01)
STREAMING = Attempt(opened=True, packets=40, waited_s=0.1)


def _message(exc: av.FFmpegError | OSError, attempt: Attempt) -> str:
    return connection_error(exc, attempt, connect_s=5.0, stall_s=3.0)


@pytest.mark.parametrize(
    ("exc", "attempt", "expected"),
    [
        (
            av.ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused", URL),
            OPENING_QUICKLY,
            "the camera refused the connection (nothing listens on that port)",
        ),
        (
            OSError(errno.EHOSTUNREACH, "No route to host"),
            OPENING_QUICKLY,
            "the camera's host cannot be reached from the server (no route to it)",
        ),
        (
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            OPENING_QUICKLY,
            "the camera's host cannot be reached from the server (no route to it)",
        ),
        (  # FFmpeg's own connect timeout
            av.TimeoutError(errno.ETIMEDOUT, "Connection timed out", URL),
            Attempt(opened=False, packets=0, waited_s=5.01),
            "no answer from the camera within 5 s",
        ),
        (  # PyAV's limit cut the open short while FFmpeg waited: it says "invalid data"
            INVALID,
            Attempt(opened=False, packets=0, waited_s=5.0),
            "no answer from the camera within 5 s",
        ),
        (  # PyAV's limit on a read, mid-stream
            av.ExitError(-1414092869, "Immediate exit requested", URL),
            STREAMING,
            "no frame from the camera for 3 s",
        ),
        (
            av.ConnectionResetError(errno.ECONNRESET, "Connection reset by peer", URL),
            STREAMING,
            "the camera closed the connection",
        ),
        (  # an HTTP camera that hung up without an answer
            av.EOFError(-541478725, "End of file", URL),
            OPENING_QUICKLY,
            "the camera closed the connection before sending a stream",
        ),
        (
            INVALID,
            STREAMING,
            "the camera's stream turned into data FFmpeg cannot read",
        ),
        (
            av.HTTPNotFoundError(-875574520, "Server returned 404 Not Found", URL),
            OPENING_QUICKLY,
            "the camera has no stream at that path (404)",
        ),
        (
            av.HTTPBadRequestError(-808465656, "Server returned 400 Bad Request", URL),
            OPENING_QUICKLY,
            "the camera answered with an error (Server returned 400 Bad Request)",
        ),
    ],
)
def test_each_class_of_fault_has_its_own_message(
    exc: av.FFmpegError | OSError, attempt: Attempt, expected: str
) -> None:
    assert _message(exc, attempt) == expected


def test_invalid_data_at_once_is_not_taken_for_a_timeout_and_says_what_it_may_be() -> None:
    message = _message(INVALID, OPENING_QUICKLY)
    assert "not a video stream FFmpeg can read" in message and "closed the connection" in message
    assert "within" not in message


def test_an_unknown_error_keeps_only_ffmpegs_words_never_the_url() -> None:
    exc = av.PermissionError(errno.EACCES, "Permission denied", URL)
    assert URL in str(exc)  # what the message must not be built from
    assert _message(exc, OPENING_QUICKLY) == "cannot connect: Permission denied"
    assert _message(exc, STREAMING) == "the connection failed: Permission denied"
