"""``/v1/pose``: video jobs. Uploads stream to disk; the runner does the work in the background."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from tdmi.protocol import (
    ErrorPublic,
    JobCreatedPublic,
    JobLinks,
    JobPublic,
    JobResultPublic,
    ResultFormat,
)
from tdmi.service.api.job_form import FILE_FIELD, FORM_FIELDS, parse_job_form, upload_body
from tdmi.service.api.uploads import receive_upload
from tdmi.service.auth import Caller
from tdmi.service.client_text import shown
from tdmi.service.deps import Authorised, CallerDep, JobsDep, SettingsDep
from tdmi.service.errors import ApiError
from tdmi.service.jobs.formats import render_result
from tdmi.service.jobs.service import JobService
from tdmi.service.jobs.store import JobRecord

__all__ = ["router"]

router = APIRouter(prefix="/v1/pose", tags=["jobs"], dependencies=[Authorised])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 404, 409, 413, 415, 422, 429, 503, 507)
}


def _links(request: Request, record: JobRecord) -> JobLinks:
    base = str(request.url_for("get_job", job_id=record.id))
    video = f"{base}/video" if record.options.get("render") else None
    return JobLinks(self=base, result=f"{base}/result", video=video)


def _public(request: Request, jobs: JobService, record: JobRecord) -> JobPublic:
    return JobPublic(
        job_id=record.id,
        status=record.status,
        model=record.model,
        progress=jobs.progress(record),
        error=record.error,
        created_at=record.created_at,
        updated_at=record.updated_at,
        links=_links(request, record),
    )


def _declared_bytes(request: Request) -> int:
    """The body's size as its ``Content-Length`` declares it; 0 if absent or not a plain number."""
    declared = request.headers.get("content-length", "")
    plain = declared.isascii() and declared.isdigit() and len(declared) < 20
    return int(declared) if plain else 0


async def _awaited_result(jobs: JobService, record: JobRecord) -> JSONResponse:
    """``?wait=true``: the job's result once it has finished, or why there is none."""
    ended = await jobs.wait(record.id)
    if ended is None:
        raise ApiError(404, "not_found", f"job {record.id} was deleted while it ran")
    if ended.status != "done" or ended.result_path is None:
        raise ApiError(422, f"job_{ended.status}", ended.error or f"job {ended.status}")
    return JSONResponse(json.loads(ended.result_path.read_text()), status_code=200)


@router.post(
    "",
    operation_id="create_job",
    status_code=202,
    responses={**_ERRORS, 200: {"model": JobResultPublic, "description": "with ?wait=true"}},
    openapi_extra=upload_body(),
)
async def create_job(
    request: Request,
    jobs: JobsDep,
    settings: SettingsDep,
    caller: CallerDep,
    wait: Annotated[bool, Query(description="answer with the result (short videos only)")] = False,
) -> JSONResponse:
    async with jobs.admit(_declared_bytes(request)) as slot:
        upload = await receive_upload(request, slot.path, FILE_FIELD, settings.max_upload_bytes, FORM_FIELDS)
        job = parse_job_form(upload.fields, upload.filename, caller.owner)
        record = await jobs.create(slot, job, wait=wait)
    if wait:
        return await _awaited_result(jobs, record)
    created = JobCreatedPublic(job_id=record.id, status=record.status, links=_links(request, record))
    return JSONResponse(
        created.model_dump(mode="json"), status_code=202, headers={"Location": created.links.self}
    )


async def _record(jobs: JobService, job_id: str, caller: Caller) -> JobRecord:
    """The job if this caller may see it: another key's job is answered 404, like an unknown one."""
    record = await jobs.get(job_id, caller)
    if record is None:  # the id is the client's: shown cut and escaped
        raise ApiError(404, "not_found", f"no job {shown(job_id, 64)}")
    return record


@router.get("/{job_id}", operation_id="get_job", responses=_ERRORS)
async def get_job(request: Request, job_id: str, jobs: JobsDep, caller: CallerDep) -> JobPublic:
    return _public(request, jobs, await _record(jobs, job_id, caller))


@router.get("/{job_id}/result", operation_id="get_job_result", responses=_ERRORS)
async def get_job_result(
    job_id: str, jobs: JobsDep, caller: CallerDep, format: Annotated[ResultFormat, Query()] = "json"
) -> JSONResponse:
    record = await _record(jobs, job_id, caller)
    if record.status != "done" or record.result_path is None:
        raise ApiError(409, "not_done", f"job {job_id} is {record.status}; no result yet")
    text = await asyncio.to_thread(record.result_path.read_text)
    result = JobResultPublic.model_validate_json(text)
    return JSONResponse(render_result(result, format))


@router.get(
    "/{job_id}/video",
    operation_id="get_job_video",
    responses={**_ERRORS, 200: {"content": {"video/mp4": {}}}},
    response_class=FileResponse,
)
async def get_job_video(job_id: str, jobs: JobsDep, caller: CallerDep) -> FileResponse:
    record = await _record(jobs, job_id, caller)
    if not record.options.get("render"):
        raise ApiError(404, "not_rendered", f"job {job_id} was submitted without render=true")
    if record.status != "done" or record.video_path is None:
        raise ApiError(409, "not_done", f"job {job_id} is {record.status}; no video yet")
    return FileResponse(record.video_path, media_type="video/mp4", filename=f"{job_id}.mp4")


@router.delete("/{job_id}", operation_id="cancel_job", responses=_ERRORS)
async def cancel_job(request: Request, job_id: str, jobs: JobsDep, caller: CallerDep) -> JobPublic:
    """Delete the job with its upload, result and overlay; a queued or running job is cancelled
    first. Answers the job's last state (``cancelled`` if it had not finished); afterwards the job
    is 404. A running job's files go once its run has stopped."""
    await _record(jobs, job_id, caller)
    record = await jobs.delete(job_id)
    if record is None:  # deleted meanwhile by another request or the retention
        raise ApiError(404, "not_found", f"no job {job_id}")
    return _public(request, jobs, record)
