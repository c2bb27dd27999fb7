"""The REST API as data: one ``Call`` per endpoint says what to send and how to read the answer.

The sync and async clients differ only in how they send a ``Call`` (``httpx.Client`` or
``httpx.AsyncClient``), so every URL, form field, status check and model lives here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ValidationError

from tdmi.client.errors import (
    AuthError,
    BadRequest,
    JobFailed,
    PoseError,
    ServerError,
    ServerUnreachable,
    SourceError,
)
from tdmi.protocol import (
    ErrorPublic,
    JobCreatedPublic,
    JobPublic,
    JobResultPublic,
    ModelsPublic,
    ResultFormat,
)
from tdmi.protocol.sources import SourceCreated, SourceInfo, SourceList

__all__ = [
    "Call",
    "Instant",
    "add_source",
    "auth_headers",
    "cancel_job",
    "check_outcome",
    "error_for",
    "get_job",
    "get_result",
    "get_source",
    "list_models",
    "list_sources",
    "open_upload",
    "raise_for_error",
    "remove_source",
    "request_options",
    "source_path",
    "source_results",
    "submit_job",
    "unreachable",
    "video_path",
    "ws_url",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Instant = float | datetime | str
"""A time the server reads: epoch seconds, a ``datetime`` (naive is UTC, as the server reads it),
or text it parses itself (epoch seconds or ISO 8601)."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: method, path (relative to the server's URL), what to send, how to parse."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    upload: Path | None = None  # sent as the multipart field "file"
    json: dict[str, Any] | None = None  # sent as a JSON body


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def ws_url(base_url: str, path: str = "/v1/stream") -> str:
    """``http(s)://host/prefix`` -> ``ws(s)://host/prefix/v1/stream``."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"server URL must start with http:// or https://, got {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def unreachable(base_url: str, exc: Exception) -> ServerUnreachable:
    return ServerUnreachable(f"cannot reach the server at {base_url}: {exc or type(exc).__name__}")


def raise_for_error(response: httpx.Response) -> None:
    """Raise the server's error (``ErrorPublic`` body) as ``AuthError``, ``BadRequest`` or ``ServerError``."""
    if response.is_success:
        return
    try:
        body = ErrorPublic.model_validate_json(response.read())
        kind, detail = body.error, body.detail
    except ValidationError:
        kind, detail = "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
    raise error_for(response.status_code, kind, detail)


def error_for(status: int, kind: str, detail: str) -> ServerError:
    """The SDK's exception for an HTTP status: ``AuthError`` (401), ``BadRequest`` (other 4xx),
    else ``ServerError``."""
    cls = AuthError if status == 401 else BadRequest if 400 <= status < 500 else ServerError
    return cls(status, kind, detail)


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        raise_for_error(response)
        try:
            return cls.model_validate_json(response.content)
        except ValidationError as exc:
            raise PoseError(f"unexpected answer from the server (not a {cls.__name__}): {exc}") from None

    return parse


def _json(response: httpx.Response) -> Any:
    raise_for_error(response)
    return response.json()


def list_models() -> Call[ModelsPublic]:
    return Call("GET", "/v1/models", _model(ModelsPublic))


def submit_job(
    video: str | Path,
    *,
    model: str | None = None,
    lookahead: int | None = None,
    render: bool = False,
    boxes: dict[str, list[list[float]]] | None = None,
) -> Call[JobCreatedPublic]:
    """Upload ``video`` as a job; ``boxes`` maps frame index -> person boxes (then no detector runs)."""
    path = Path(video)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    data = {"render": "true" if render else "false"}
    if model:
        data["model"] = model
    if lookahead is not None:
        data["lookahead"] = str(lookahead)
    if boxes is not None:
        data["boxes"] = json.dumps(boxes)
    return Call("POST", "/v1/pose", _model(JobCreatedPublic), data=data, upload=path)


def get_job(job_id: str) -> Call[JobPublic]:
    return Call("GET", f"/v1/pose/{job_id}", _model(JobPublic))


def _result_parse(format: ResultFormat) -> Callable[[httpx.Response], Any]:
    """``json``: a ``JobResultPublic``; ``posetrack``: a PoseTrack 2018 dict; ``coco``: a list of dicts."""
    if format not in ("json", "posetrack", "coco"):
        raise ValueError(f"format must be json, posetrack or coco, got {format!r}")
    return _model(JobResultPublic) if format == "json" else _json


def get_result(job_id: str, format: ResultFormat = "json") -> Call[Any]:
    return Call("GET", f"/v1/pose/{job_id}/result", _result_parse(format), params={"format": format})


def cancel_job(job_id: str) -> Call[JobPublic]:
    return Call("DELETE", f"/v1/pose/{job_id}", _model(JobPublic))


def video_path(job_id: str) -> str:
    return f"/v1/pose/{job_id}/video"


def source_path(source_id: str) -> str:
    """``/v1/sources/ID``, the id quoted: whatever a user types stays one path segment."""
    return f"/v1/sources/{quote(source_id, safe='')}"


def add_source(
    url: str,
    *,
    model: str | None = None,
    lookahead: int | None = None,
    max_fps: float | None = None,
    record: bool | None = None,
) -> Call[SourceCreated]:
    """Have the server pull the camera at ``url``; the server checks the options (422 for a bad one)."""
    given = {"model": model, "lookahead": lookahead, "max_fps": max_fps, "record": record}
    body = {"url": url, **{name: value for name, value in given.items() if value is not None}}
    return Call("POST", "/v1/sources", _model(SourceCreated), json=body)


def list_sources() -> Call[list[SourceInfo]]:
    listed = _model(SourceList)
    return Call("GET", "/v1/sources", lambda response: listed(response).sources)


def get_source(source_id: str) -> Call[SourceInfo]:
    return Call("GET", source_path(source_id), _model(SourceInfo))


def remove_source(source_id: str) -> Call[SourceInfo]:
    return Call("DELETE", source_path(source_id), _model(SourceInfo))


def source_results(
    source_id: str, start: Instant, end: Instant | None = None, format: ResultFormat = "json"
) -> Call[Any]:
    """A recorded source's results captured from ``start`` to ``end`` (default: now), parsed as
    ``get_result``'s; the server checks the times (422 for one it cannot read or a bad range)."""
    params = {"from": _instant(start), "format": format}
    if end is not None:
        params["to"] = _instant(end)
    return Call("GET", source_path(source_id) + "/results", _result_parse(format), params=params)


def _instant(moment: Instant) -> str:
    """The query's text for a time: text as given, a number or ``datetime`` as epoch seconds."""
    if isinstance(moment, str):
        return moment
    if isinstance(moment, datetime):
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return repr(float(moment))


def check_outcome(job: JobPublic) -> JobPublic:
    """A finished job as it is when done; ``JobFailed`` with the server's reason otherwise."""
    if job.status in ("failed", "cancelled"):
        reason = f": {job.error}" if job.error else ""
        raise JobFailed(job, f"job {job.job_id} {job.status}{reason}")
    return job


def request_options(call: Call[Any], files: dict[str, Any] | None) -> dict[str, Any]:
    """What httpx's ``request`` sends for ``call`` besides its method and path: the query, the
    body (a form, ``files`` from ``open_upload``, or JSON)."""
    return {"params": call.params, "data": call.data or None, "files": files, "json": call.json}


def open_upload(call: Call[Any]) -> dict[str, Any] | None:
    """The ``files=`` argument of httpx for ``call`` (the caller closes the file)."""
    if call.upload is None:
        return None
    return {"file": (call.upload.name, call.upload.open("rb"), "application/octet-stream")}
