"""What ``stream`` yields: typed events, one per server answer plus the connection's own news.

A frame is answered by a ``FrameResult`` or a ``FrameDropped``, in frame order. Around them:
``StreamStarted`` on every (re)connection, ``Reconnecting`` when a connection was lost (with the
frames in flight whose answers are lost), ``StreamResumed`` when a scale-out server moved the
stream to another worker, and ``StreamEnded`` once, last, after the source ran out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import TypeAdapter

from tdmi.protocol import PersonPose
from tdmi.protocol.stream import (
    DroppedMessage,
    EndedMessage,
    ReadyMessage,
    ResultMessage,
    ResumedMessage,
    ServerMessage,
)

__all__ = [
    "FrameDropped",
    "FrameResult",
    "Reconnecting",
    "StreamEnded",
    "StreamEvent",
    "StreamResumed",
    "StreamStarted",
    "parse_server_message",
]

_SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def parse_server_message(text: str | bytes) -> ServerMessage:
    """One server message as its protocol model (raises pydantic's ``ValidationError``)."""
    return _SERVER_MESSAGE.validate_json(text)


@dataclass(frozen=True)
class StreamStarted:
    """A connection is open and configured (the first one, or one after a reconnection)."""

    ready: ReadyMessage


@dataclass(frozen=True)
class FrameResult:
    """The poses of one frame; ``image`` is the RGB frame that was sent (None unless kept)."""

    message: ResultMessage
    image: np.ndarray | None = None

    @property
    def frame_id(self) -> int:
        return self.message.frame_id

    @property
    def timestamp(self) -> float | None:
        return self.message.timestamp

    @property
    def persons(self) -> list[PersonPose]:
        return self.message.persons

    @property
    def latency_ms(self) -> float:
        return self.message.latency_ms


@dataclass(frozen=True)
class FrameDropped:
    """The server skipped a frame (overload, rate, client behind); ``message.reason`` says which."""

    message: DroppedMessage
    image: np.ndarray | None = None

    @property
    def frame_id(self) -> int:
        return self.message.frame_id


@dataclass(frozen=True)
class StreamResumed:
    """Scale-out servers only: the stream moved to another worker and goes on; track ids restart."""

    message: ResumedMessage


@dataclass(frozen=True)
class Reconnecting:
    """The connection dropped (``code``: its close code, None for a network failure); the SDK waits
    ``delay_s`` and reconnects. The frames in ``lost`` were sent and will never be answered; the
    new connection is a new server stream (new stream id, new track ids)."""

    attempt: int
    delay_s: float
    code: int | None
    reason: str
    lost: tuple[int, ...]


@dataclass(frozen=True)
class StreamEnded:
    """The source ran out and every frame was answered; counts are those of the last connection."""

    message: EndedMessage


StreamEvent = StreamStarted | FrameResult | FrameDropped | StreamResumed | Reconnecting | StreamEnded
