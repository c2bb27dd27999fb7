"""Messages of the live WebSocket ``/v1/stream``.

Client -> server: binary messages are encoded frames (JPEG or PNG), optionally prefixed by a
20-byte header (``FRAME_HEADER``: magic ``TDMI``, frame id u64, capture timestamp f64, little
endian); text messages are JSON control messages (``ClientMessage``). Server -> client: JSON
text messages (``ServerMessage``), one ``result`` or ``dropped`` per frame, in frame order.
"""

from __future__ import annotations

import struct
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from tdmi.protocol.poses import PersonPose

__all__ = [
    "CLOSE_CODES",
    "FRAME_HEADER",
    "FRAME_MAGIC",
    "MAX_ACK_WINDOW",
    "MAX_BOXES",
    "MAX_FRAME_ID",
    "AckMessage",
    "BoxMode",
    "BoxesMessage",
    "ClientMessage",
    "ConfigMessage",
    "DroppedMessage",
    "EndMessage",
    "EndedMessage",
    "ErrorMessage",
    "ReadyMessage",
    "ResultMessage",
    "ResumedMessage",
    "ServerMessage",
    "pack_frame",
    "unpack_frame",
]

MAX_ACK_WINDOW = 1024  # results in flight per stream: more would only hide a client that never acks
MAX_FRAME_ID = 2**64 - 1  # frame ids travel as u64 in the binary header
MAX_BOXES = 256  # person boxes per frame
FRAME_MAGIC = b"TDMI"
FRAME_HEADER = struct.Struct("<4sQd")  # magic, frame id, capture timestamp (seconds)

# Close codes the server uses (RFC 6455 and the 4000-4999 private range).
CLOSE_CODES = {
    1000: "normal: the client sent `end` and every result was delivered",
    1012: "service restart: the server is shutting down; reconnect (to another instance)",
    1013: "try again later: the server is not ready (models loading or shutting down)",
    1008: "policy violation: missing or wrong API key",
    1009: "message too big",
    1011: "internal error, or keepalive timeout: the peer stopped answering pings",
    4000: "protocol error: too many bad messages, or no message for the idle timeout (idle_timeout)",
    4008: "client behind: results not read or acknowledged for too long, or too many frames waiting "
    "for theirs (client_behind)",
    4029: "too many concurrent streams",
}


# where a live frame's person boxes come from (see ConfigMessage.detector)
BoxMode = Literal["auto", "client", "detector"]


class ConfigMessage(BaseModel):
    """First message of a stream (optional unless the server requires it)."""

    type: Literal["config"] = "config"
    model: str | None = Field(
        default=None, max_length=128, description="model name; default: the first loaded model"
    )
    lookahead: int | None = Field(
        default=None, ge=0, le=64, description="future frames to wait for (0..d); default: the server's"
    )
    detector: BoxMode = Field(
        default="auto",
        description="client: only boxes sent by the client; detector: the server's detector; "
        "auto: client boxes when given for a frame, else the detector",
    )
    detect_every: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="run the detector every N frames, propagating boxes in between",
    )
    ack_window: int | None = Field(
        default=None, ge=1, le=MAX_ACK_WINDOW, description="max unacknowledged results"
    )
    smoothing: Literal["none", "one_euro"] | None = Field(
        default=None,
        description="one_euro: smooth each track's keypoints (One Euro filter); default: the server's",
    )
    smoothing_min_cutoff: float | None = Field(
        default=None, gt=0, le=100, description="One Euro cutoff (Hz) of a still joint; default: the server's"
    )
    smoothing_beta: float | None = Field(
        default=None, ge=0, le=10, description="One Euro speed coefficient (1/pixel); default: the server's"
    )


class BoxesMessage(BaseModel):
    """Person boxes for one frame; send it before that frame's binary message."""

    type: Literal["boxes"] = "boxes"
    frame_id: int | None = Field(
        default=None, ge=0, le=MAX_FRAME_ID, description="frame the boxes belong to; default: the next"
    )
    boxes: list[list[float]] = Field(
        max_length=MAX_BOXES, description="[x1, y1, x2, y2] or [x1, y1, x2, y2, score]"
    )


class AckMessage(BaseModel):
    """Acknowledges every result up to and including ``frame_id``."""

    type: Literal["ack"] = "ack"
    frame_id: int = Field(ge=0, le=MAX_FRAME_ID)


class EndMessage(BaseModel):
    """No more frames: the server answers the pending ones, sends ``ended`` and closes (1000)."""

    type: Literal["end"] = "end"


ClientMessage = Annotated[ConfigMessage | BoxesMessage | AckMessage | EndMessage, Field(discriminator="type")]


class ReadyMessage(BaseModel):
    type: Literal["ready"] = "ready"
    stream_id: str
    model: str
    lookahead: int
    ack_window: int
    joints: list[str]


class ResultMessage(BaseModel):
    type: Literal["result"] = "result"
    frame_id: int
    timestamp: float | None = Field(description="the client's capture timestamp, echoed")
    persons: list[PersonPose]
    latency_ms: float = Field(description="from the frame's arrival to this message")


class DroppedMessage(BaseModel):
    type: Literal["dropped"] = "dropped"
    frame_id: int
    reason: str


class ResumedMessage(BaseModel):
    """Scale-out only: the stream moved to another worker (its worker died) and goes on.

    Frames in flight on the old worker are lost (answered as ``dropped``); the new worker
    rebuilds its buffer from the next frames, so the first results after this may use fewer
    neighbours. Track ids restart.
    """

    type: Literal["resumed"] = "resumed"
    stream_id: str
    next_frame_id: int = Field(description="the first frame the new worker will answer")
    reason: str


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    error: str
    detail: str
    frame_id: int | None = None


class EndedMessage(BaseModel):
    type: Literal["ended"] = "ended"
    frames: int
    dropped: int


ServerMessage = Annotated[
    ReadyMessage | ResultMessage | DroppedMessage | ResumedMessage | ErrorMessage | EndedMessage,
    Field(discriminator="type"),
]


def pack_frame(image: bytes, frame_id: int, timestamp: float) -> bytes:
    """Binary message carrying an encoded frame with its id and capture time."""
    return FRAME_HEADER.pack(FRAME_MAGIC, frame_id, timestamp) + image


def unpack_frame(data: bytes) -> tuple[bytes, int | None, float | None]:
    """Split a binary message into (image bytes, frame id, timestamp); header optional."""
    if data[:4] == FRAME_MAGIC and len(data) >= FRAME_HEADER.size:
        _, frame_id, timestamp = FRAME_HEADER.unpack_from(data)
        return data[FRAME_HEADER.size :], frame_id, timestamp
    return data, None, None
