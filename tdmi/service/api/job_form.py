"""The form fields of ``POST /v1/pose``, parsed strictly: ASCII integers, JSON with depth limits.

Form fields arrive as text. Each is checked by a pydantic model (pydantic's JSON parser caps
nesting and number length, so a boxes field nested 50,000 deep or a number thousands of digits
long is a 422 like any other mistake); the job service then holds them to the model and the video
(``tdmi.service.jobs.options``). The route's OpenAPI body is generated from the same model, so the
document and the parser cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Json, Strict, StringConstraints, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from tdmi.service.errors import ApiError
from tdmi.service.jobs.options import JobRequest

__all__ = ["FORM_FIELDS", "JobForm", "parse_job_form", "upload_body"]

# a frame index written in ASCII digits; "²", "٣" and thousand-digit numbers are not frame indices
FrameKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]
Number = Annotated[float, Strict()]
FILE_FIELD = "file"


class JobForm(BaseModel):
    """The optional fields beside the ``file`` part (the upload refuses any other part)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    model: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="model name (default: the first loaded)"
    )
    boxes: Json[dict[FrameKey, list[list[Number]]]] | None = Field(
        None,
        description='JSON {"<frame index>": [[x1, y1, x2, y2(, score)], ...]}; '
        "when given, only these boxes are used (no detector)",
    )
    lookahead: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")] | None = Field(
        None, description="future frames per clip, 0..d of the model"
    )
    render: bool = Field(False, description="also write an overlay MP4")


FORM_FIELDS = (FILE_FIELD, *JobForm.model_fields)


def parse_job_form(fields: dict[str, str], filename: str | None, owner: str | None) -> JobRequest:
    """The job the form asks for, or a 422 naming the first bad field (``invalid_boxes`` for the
    boxes); ``filename`` is the upload's, ``owner`` the caller's key id."""
    # an empty field is an absent one (HTML forms send empty inputs)
    given = {name: value for name, value in fields.items() if value.strip()}
    try:
        form = JobForm.model_validate(given)
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
    lookahead = None if form.lookahead is None else int(form.lookahead)
    return JobRequest(form.model, form.boxes, lookahead, form.render, filename, owner)


def _short(part: object) -> str:
    """A location in the client's JSON, cut short: a key may be thousands of characters long."""
    text = str(part)
    return text if len(text) <= 24 else f"{text[:20]}..."


class _FormFieldSchema(GenerateJsonSchema):
    """Form fields as a client sends them: an optional field is one left out, never a null."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if self.get_default_value(schema) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def upload_body() -> dict[str, Any]:
    """The route's multipart body for ``openapi_extra``: the video part and ``JobForm``'s fields."""
    form = JobForm.model_json_schema(schema_generator=_FormFieldSchema)
    video = {"type": "string", "format": "binary", "description": "the video"}
    schema = {**form, "required": [FILE_FIELD], "properties": {FILE_FIELD: video, **form["properties"]}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
