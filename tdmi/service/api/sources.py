"""``/v1/sources``: camera sources the server pulls, their viewers and their live overlay.

The viewers' WebSocket carries the messages of ``tdmi.protocol.sources.ViewerMessage``
(docs/websocket.md, Camera sources); the overlay is MJPEG, which a browser's ``<img>`` shows.
A source's URL is shown without its credentials, in answers and in the log alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketState

from tdmi.protocol import ErrorPublic, ResultFormat
from tdmi.protocol.sources import SourceCreate, SourceCreated, SourceInfo, SourceLinks, SourceList
from tdmi.protocol.stream import ErrorMessage
from tdmi.service.auth import Caller
from tdmi.service.client_text import shown
from tdmi.service.deps import Authorised, AuthorisedMedia, CallerDep, SourcesDep
from tdmi.service.errors import ApiError, close_websocket
from tdmi.service.jobs.formats import render_result
from tdmi.service.sources.contract import Sources, SourceView
from tdmi.service.sources.overlay import MJPEG_BOUNDARY, mjpeg_part
from tdmi.service.sources.viewers import Viewer

__all__ = ["router"]

router = APIRouter(prefix="/v1/sources", tags=["sources"])
log = logging.getLogger("tdmi.sources")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 403, 404, 422, 429, 501, 503)
}


def _links(connection: HTTPConnection, source_id: str) -> SourceLinks:
    base = str(connection.url_for("get_source", source_id=source_id))
    results = "ws" + base.removeprefix("http") + "/results"  # http -> ws, https -> wss
    return SourceLinks(self=base, results=results, overlay=f"{base}/overlay")


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _info(connection: HTTPConnection, source: SourceView) -> SourceInfo:
    stats = source.stats()
    reader = stats.reader
    assert source.ready is not None, "a listed source has started"
    return SourceInfo(
        source_id=source.source_id,
        url=source.options.url,
        status=stats.status,
        model=source.ready.model,
        lookahead=source.ready.lookahead,
        max_fps=source.options.max_fps,
        frames_read=reader.frames_read,
        frames_processed=stats.frames_processed,
        frames_skipped=reader.frames_skipped + stats.frames_dropped,
        processing_fps=stats.processing_fps,
        camera_fps=reader.camera_fps,
        width=reader.width,
        height=reader.height,
        live_since=_time(reader.live_since),
        reconnects=reader.reconnects,
        viewers=stats.viewers,
        last_error=source.failure or reader.last_error,
        created_at=source.created_at,
        links=_links(connection, source.source_id),
    )


def _source(sources: Sources, source_id: str, caller: Caller) -> SourceView:
    """The source if this caller may see it: another key's is answered 404, like an unknown one."""
    source = sources.get(source_id, caller)
    if source is None:  # the id is the client's: shown cut and escaped
        raise ApiError(404, "not_found", f"no source {shown(source_id, 64)}")
    return source


@router.post("", operation_id="add_source", status_code=201, responses=_ERRORS, dependencies=[Authorised])
async def add_source(
    request: Request, body: SourceCreate, sources: SourcesDep, caller: CallerDep
) -> JSONResponse:
    """Start pulling a camera. Answers at once, while the source is ``connecting``; its state
    and the reason it is not live are in ``GET /v1/sources/{id}``."""
    source = await sources.add(body, caller)
    created = SourceCreated(
        source_id=source.source_id, status=source.status(), links=_links(request, source.source_id)
    )
    return JSONResponse(
        created.model_dump(mode="json"), status_code=201, headers={"Location": created.links.self}
    )


@router.get("", operation_id="list_sources", responses=_ERRORS, dependencies=[Authorised])
async def list_sources(request: Request, sources: SourcesDep, caller: CallerDep) -> SourceList:
    return SourceList(sources=[_info(request, s) for s in sources.list(caller)])


@router.get("/{source_id}", operation_id="get_source", responses=_ERRORS, dependencies=[Authorised])
async def get_source(request: Request, source_id: str, sources: SourcesDep, caller: CallerDep) -> SourceInfo:
    return _info(request, _source(sources, source_id, caller))


@router.delete("/{source_id}", operation_id="delete_source", responses=_ERRORS, dependencies=[Authorised])
async def delete_source(
    request: Request, source_id: str, sources: SourcesDep, caller: CallerDep
) -> SourceInfo:
    """Stop pulling the camera and free what the source held; its viewers get ``stopped`` and
    their streams end. Answers the source's last state; afterwards it is 404."""
    _source(sources, source_id, caller)
    source = await sources.delete(source_id, caller)
    if source is None:  # deleted meanwhile by another request
        raise ApiError(404, "not_found", f"no source {shown(source_id, 64)}")
    return _info(request, source)


@router.get(
    "/{source_id}/results", operation_id="source_results", responses=_ERRORS, dependencies=[Authorised]
)
async def source_results(
    sources: SourcesDep,
    caller: CallerDep,
    source_id: str,
    start: Annotated[str, Query(alias="from", description="ISO 8601 or epoch seconds")],
    end: Annotated[
        str | None, Query(alias="to", description="ISO 8601 or epoch seconds; default: now")
    ] = None,
    format: Annotated[ResultFormat, Query()] = "json",
) -> JSONResponse:
    """The results of a source added with ``record: true`` captured between ``from`` and ``to``, in
    a job's result formats (``json``: ``job_id`` is the source's id, each frame's ``index`` its live
    frame id and ``pts`` its capture time in epoch seconds). A deleted source's recording stays
    readable here until the jobs' retention removes it."""
    result = await sources.results(
        source_id, caller, _instant(start, "from"), time.time() if end is None else _instant(end, "to")
    )
    return JSONResponse(await asyncio.to_thread(render_result, result, format))


def _instant(text: str, name: str) -> float:
    """Epoch seconds from ``text``: a number of seconds, or an ISO 8601 time (UTC unless it says)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422, "bad_time", f"{name!r} must be ISO 8601 or epoch seconds, not {shown(text, 64)}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@router.get(
    "/{source_id}/overlay",
    operation_id="source_overlay",
    responses={**_ERRORS, 200: {"content": {f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}": {}}}},
    response_class=StreamingResponse,
    dependencies=[AuthorisedMedia],
)
async def source_overlay(source_id: str, sources: SourcesDep, caller: CallerDep) -> StreamingResponse:
    """The live overlay as MJPEG: ``<img src=".../overlay?api_key=KEY">`` shows the newest frame
    with its poses drawn, at most ``max_fps`` pictures a second, until the source is deleted."""
    source = _source(sources, source_id, caller)
    overlay = source.overlay
    assert overlay is not None, "a listed source has started"
    metrics = sources.metrics

    async def parts() -> AsyncIterator[bytes]:
        metrics.source_viewers.labels("overlay").inc()
        try:
            async for jpeg in overlay.frames():
                yield mjpeg_part(jpeg)
        finally:
            metrics.source_viewers.labels("overlay").dec()

    return StreamingResponse(
        parts(),
        media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )


@router.websocket("/{source_id}/results", name="watch_source", dependencies=[Authorised])
async def watch_source(ws: WebSocket, source_id: str, sources: SourcesDep, caller: CallerDep) -> None:
    """One viewer: the source's ``status`` first, then every result from now on (docs/websocket.md).

    Sends are time-boxed by ``ack_timeout_s``: a viewer whose TCP window stays full is closed
    (4008); one merely slow loses results (``dropped``) without slowing anyone else. What the
    viewer sends is read only to see it leave."""
    source = _source(sources, source_id, caller)
    settings = sources.settings
    await ws.accept()
    viewer = source.viewers.join(source.status_message())
    sources.metrics.source_viewers.labels("results").inc()
    leaving = asyncio.create_task(_until_gone(ws, viewer), name=f"source-{source_id}-viewer-read")
    code, reason, told = 1000, "source stopped", None
    try:
        while (text := await viewer.next()) is not None:
            async with asyncio.timeout(settings.ack_timeout_s):
                await ws.send_text(text)
        if leaving.done():  # the viewer left, rather than the source stopping
            code = 0
    except TimeoutError:
        code, reason = 4008, "viewer behind"
        told = ErrorMessage(
            error="client_behind", detail=f"results not read for {settings.ack_timeout_s:g} s"
        )
    except WebSocketDisconnect:
        code = 0
    finally:
        source.viewers.leave(viewer)
        sources.metrics.source_viewers.labels("results").dec()
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await leaving
        if code and ws.application_state != WebSocketState.DISCONNECTED:
            await close_websocket(ws, code, reason, told)


async def _until_gone(ws: WebSocket, viewer: Viewer) -> None:
    """Reads what the viewer sends only to see it leave; then its queue is dropped and the
    route's ``viewer.next()`` ends, so that no task is started per message to watch for this."""
    try:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        viewer.close(discard=True)
