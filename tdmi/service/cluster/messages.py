"""What travels between API nodes and workers for live streams (Redis Stream entries).

Operations go to a worker's inbox as ``{"op": <JSON>, "data": <frame bytes>}``; replies go to
the API node's reply Stream as ``{"stream": id, "worker": id, "msg": <JSON>}``. A frame travels
once, as the bytes the client sent; replies reuse the public WebSocket messages.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from tdmi.protocol.stream import ConfigMessage, DroppedMessage, ErrorMessage, ReadyMessage, ResultMessage

__all__ = [
    "OPERATION",
    "REPLY",
    "CloseOp",
    "EndOp",
    "FeedClosed",
    "FrameOp",
    "OpenOp",
    "Operation",
    "Reply",
]


class OpenOp(BaseModel):
    op: Literal["open"] = "open"
    stream_id: str
    api_node: str = Field(description="the node holding the WebSocket: replies go to its Stream")
    config: ConfigMessage


class FrameOp(BaseModel):
    op: Literal["frame"] = "frame"
    stream_id: str
    frame_id: int
    timestamp: float | None = None
    boxes: list[list[float]] | None = None
    skip_reason: str | None = None


class EndOp(BaseModel):
    op: Literal["end"] = "end"
    stream_id: str


class CloseOp(BaseModel):
    op: Literal["close"] = "close"
    stream_id: str


Operation = Annotated[OpenOp | FrameOp | EndOp | CloseOp, Field(discriminator="op")]
OPERATION: TypeAdapter[Operation] = TypeAdapter(Operation)


class FeedClosed(BaseModel):
    """The worker answered every frame after ``end`` (or refused the stream): no more replies."""

    type: Literal["closed"] = "closed"


Reply = Annotated[
    ReadyMessage | ResultMessage | DroppedMessage | ErrorMessage | FeedClosed, Field(discriminator="type")
]
REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)
