"""What a client asks of a new video job, and its options once held to the model and the video.

The form's syntax is the HTTP layer's (``tdmi.service.api.job_form``); what depends on the
chosen model (the lookahead) or on the uploaded video (frame indices and boxes inside its frames)
is checked here, once the job service knows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tdmi.service.detection import parse_client_boxes
from tdmi.service.errors import ApiError
from tdmi.service.streaming.boxes import detections_array

__all__ = ["JobRequest", "lookahead_within", "video_boxes"]

Boxes = dict[str, list[list[float]]]  # frame index (ASCII digits) -> [[x1, y1, x2, y2(, score)], ...]


@dataclass(frozen=True)
class JobRequest:
    """A new job as the client asked for it; ``owner`` is the creating key's id (None in open mode)."""

    model: str | None
    boxes: Boxes | None
    lookahead: int | None
    render: bool
    filename: str | None
    owner: str | None


def lookahead_within(lookahead: int | None, radius: int) -> int | None:
    """The asked lookahead as a number of future frames, 0..d of the chosen model."""
    if lookahead is not None and lookahead > radius:
        detail = f"lookahead must be an integer from 0 to {radius}, got {lookahead}"
        raise ApiError(422, "invalid_request", detail)
    return lookahead


def video_boxes(boxes: Boxes | None, width: int, height: int, frames: int) -> Boxes:
    """The client's boxes checked against the video: frame indices it has, boxes inside its frames."""
    out: Boxes = {}
    for key, value in (boxes or {}).items():
        index = int(key)
        if index >= frames:
            raise ApiError(
                422, "invalid_boxes", f"boxes: {key!r} is not a frame index of this video (0..{frames - 1})"
            )
        try:
            parsed = parse_client_boxes(value, image_size=(width, height))
        except ValueError as exc:
            raise ApiError(422, "invalid_boxes", f"boxes for frame {index}: {exc}") from None
        out[str(index)] = detections_array(parsed).tolist()
    return out
