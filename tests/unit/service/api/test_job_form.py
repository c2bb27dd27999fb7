"""The upload form's OpenAPI body is generated from the model that parses the form, so the
document names exactly the fields the route reads."""

from __future__ import annotations

import json

from fastapi import FastAPI

from tdmi.service.api import jobs
from tdmi.service.api.job_form import FORM_FIELDS, JobForm, parse_job_form


def _upload_schema() -> dict:
    app = FastAPI()
    app.include_router(jobs.router)
    body = app.openapi()["paths"]["/v1/pose"]["post"]["requestBody"]
    assert body["required"] is True
    schema: dict = body["content"]["multipart/form-data"]["schema"]
    return schema


def test_the_openapi_upload_form_has_the_fields_of_the_form_model_and_the_file() -> None:
    schema = _upload_schema()
    assert set(schema["properties"]) == {"file", *JobForm.model_fields} == set(FORM_FIELDS)
    assert schema["required"] == ["file"] and schema["additionalProperties"] is False
    assert schema["properties"]["file"] == {"type": "string", "format": "binary", "description": "the video"}
    assert all(schema["properties"][name]["description"] for name in JobForm.model_fields)


def test_optional_form_fields_are_documented_as_left_out_not_as_null() -> None:
    """A form field is text or absent: the document offers no null and no null default."""
    properties = _upload_schema()["properties"]
    assert "null" not in json.dumps(properties)
    assert properties["lookahead"] == {
        "description": "future frames per clip, 0..d of the model",
        "pattern": "^[0-9]{1,3}$",
        "title": "Lookahead",
        "type": "string",
    }
    assert properties["render"]["default"] is False


def test_the_parsed_form_is_the_job_request() -> None:
    request = parse_job_form({"lookahead": " 3 ", "model": "", "render": "true"}, "a.mp4", "key-a")
    assert (request.model, request.lookahead, request.render) == (None, 3, True)
    assert (request.filename, request.owner, request.boxes) == ("a.mp4", "key-a", None)
