"""The one error type for media a client sent (videos, live frames), with the HTTP status it deserves.

Decoding happens deep in the pipeline, far from the route that answers; the error carries a
``kind`` so the API maps it to a status in one place and clients can branch on a stable code.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["HTTP_STATUS", "MediaError", "MediaErrorKind"]

MediaErrorKind = Literal[
    "unsupported_media",  # not a video/image we can read at all (wrong type, junk bytes)
    "no_video_stream",  # a readable container without video (audio only, subtitles)
    "no_frames",  # a video stream without a single decodable frame
    "corrupt",  # readable header, broken or truncated data
    "too_large",  # frame size above the configured pixel limit
    "too_long",  # duration above the configured limit
]

HTTP_STATUS: dict[MediaErrorKind, int] = {
    "unsupported_media": 415,
    "no_video_stream": 422,
    "no_frames": 422,
    "corrupt": 422,
    "too_large": 413,
    "too_long": 413,
}


class MediaError(ValueError):
    """Media that cannot be used; ``str(error)`` is one line for the user, ``kind`` says why."""

    def __init__(self, kind: MediaErrorKind, message: str):
        super().__init__(message)
        self.kind: MediaErrorKind = kind

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.kind]
