"""The form fields of ``POST /v1/pose``, parsed strictly: ASCII integers, JSON with depth limits.

Form fields arrive as text. Each is checked by a pydantic model (pydantic's JSON parser caps
nesting and number length, so a boxes field nested 50,000 deep or a number thousands of digits
long is a 422 like any other mistake); the boxes are then held to the video they belong to.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Json, Strict, StringConstraints, ValidationError

from tdmi.service.detection import parse_client_boxes
from tdmi.service.errors import ApiError
from tdmi.service.streaming.boxes import detections_array

__all__ = ["FORM_FIELDS", "JobForm", "lookahead_within", "parse_job_form", "video_boxes"]

# a frame index written in ASCII digits; "²", "٣" and thousand-digit numbers are not frame indices
FrameKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]
Number = Annotated[float, Strict()]


class JobForm(BaseModel):
    """The optional fields beside the ``file`` part (the upload refuses any other part)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    model: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    boxes: Json[dict[FrameKey, list[list[Number]]]] | None = None
    lookahead: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")] | None = None
    render: bool = False


FORM_FIELDS = ("file", *JobForm.model_fields)


def parse_job_form(fields: dict[str, str]) -> JobForm:
    """The form, or a 422 naming the first bad field (``invalid_boxes`` for the boxes)."""
    # an empty field is an absent one (HTML forms send empty inputs)
    given = {name: value for name, value in fields.items() if value.strip()}
    try:
        return JobForm.model_validate(given)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "form"
        if field == "boxes":
            where = "".join(f"[{_short(p)}]" for p in first["loc"][1:])
            raise ApiError(422, "invalid_boxes", f"boxes{where}: {first['msg']}") from None
        if field == "lookahead":
            detail = "lookahead must be a whole number written in digits 0-9"
            raise ApiError(422, "invalid_request", detail) from None
        raise ApiError(422, "invalid_request", f"{field}: {first['msg']}") from None


def _short(part: object) -> str:
    """A location in the client's JSON, cut short: a key may be thousands of characters long."""
    text = str(part)
    return text if len(text) <= 24 else f"{text[:20]}..."


def lookahead_within(form: JobForm, radius: int) -> int | None:
    """The form's lookahead as a number of future frames, 0..d of the chosen model."""
    if form.lookahead is None:
        return None
    value = int(form.lookahead)
    if value > radius:
        detail = f"lookahead must be an integer from 0 to {radius}, got {value}"
        raise ApiError(422, "invalid_request", detail)
    return value


def video_boxes(
    boxes: dict[str, list[list[float]]] | None, width: int, height: int, frames: int
) -> dict[str, list[list[float]]]:
    """The client's boxes checked against the video: frame indices it has, boxes inside its frames."""
    out: dict[str, list[list[float]]] = {}
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
