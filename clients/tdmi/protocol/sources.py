"""Camera sources (``/v1/sources``): cameras the server pulls, and what their viewers receive.

A source is a live stream whose producer is the server: its per-frame ``result`` is the message of
a pushed stream (``tdmi.protocol.stream.ResultMessage``), so one parser serves both. A viewer of
``WS /v1/sources/{id}/results`` also receives ``status`` events and, when it reads too slowly,
``dropped`` notices (``ViewerMessage``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tdmi.protocol.stream import ResultMessage

__all__ = [
    "SourceCreate",
    "SourceCreated",
    "SourceInfo",
    "SourceLinks",
    "SourceList",
    "SourceStatus",
    "SourceStatusMessage",
    "ViewerDroppedMessage",
    "ViewerMessage",
]

# connecting: before the first frame; live: frames arrive; reconnecting: the camera dropped or
# stalled and is tried again (forever, until the source is deleted); failed: it cannot be read at
# all (a bad stream); stopped: deleted
SourceStatus = Literal["connecting", "live", "reconnecting", "failed", "stopped"]


class SourceCreate(BaseModel):
    """The body of ``POST /v1/sources``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is refused, not ignored

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="rtsp://, rtsps://, http:// or https:// (MJPEG, HLS); credentials may be in it "
        "and are never shown back",
    )
    model: str | None = Field(default=None, max_length=128, description="default: the first loaded model")
    lookahead: int | None = Field(
        default=None, ge=0, le=64, description="future frames to wait for (0..d); default: the server's"
    )
    max_fps: float | None = Field(
        default=None, gt=0, le=120, description="frames per second processed at most; default: the camera's"
    )
    record: bool = Field(
        default=False,
        description="append the results to files on the server, read back by time range with "
        "GET /v1/sources/{id}/results?from=&to= until the job retention removes them",
    )


class SourceLinks(BaseModel):
    self: str
    results: str = Field(description="the viewers' WebSocket")
    overlay: str = Field(description="the live overlay as MJPEG (an <img> src)")


class SourceCreated(BaseModel):
    source_id: str
    status: SourceStatus
    links: SourceLinks


class SourceInfo(BaseModel):
    """Where a source stands. Frames ``read`` from the camera are ``processed`` (answered with
    poses) or ``skipped`` (a newer frame came first, ``max_fps``, or the engine dropped a stale one)."""

    source_id: str
    url: str = Field(description="the camera's URL without its credentials")
    status: SourceStatus
    model: str
    lookahead: int
    max_fps: float | None
    frames_read: int
    frames_processed: int
    frames_skipped: int
    processing_fps: float | None = Field(description="frames processed per second over the last seconds")
    camera_fps: float | None = Field(description="the camera's own frame rate, as its stream says")
    width: int | None
    height: int | None
    live_since: datetime | None = Field(description="when the current connection's first frame arrived")
    reconnects: int
    viewers: int
    last_error: str | None = Field(
        description="the last failure as a public message; a fault of ours names a log reference"
    )
    created_at: datetime
    links: SourceLinks


class SourceList(BaseModel):
    sources: list[SourceInfo]


class SourceStatusMessage(BaseModel):
    """The source's state changed (and the first message a viewer receives: the state now)."""

    type: Literal["status"] = "status"
    source_id: str
    status: SourceStatus
    detail: str | None = Field(default=None, description="why, for reconnecting and failed")


class ViewerDroppedMessage(BaseModel):
    """This viewer read too slowly: ``count`` results were not delivered to it before the next one
    (the source and the other viewers did not wait)."""

    type: Literal["dropped"] = "dropped"
    count: int = Field(ge=1)
    reason: str = "viewer_behind"


ViewerMessage = Annotated[
    ResultMessage | SourceStatusMessage | ViewerDroppedMessage, Field(discriminator="type")
]
