"""Camera sources: cameras the server pulls itself (``/v1/sources``), as ``client.sources``.

    with PoseClient(url, api_key=admin_key) as client:
        source = client.sources.add("rtsp://192.168.1.20:554/stream1")
        for message in client.sources.watch(source.source_id):
            if isinstance(message, ResultMessage):
                print(message.frame_id, len(message.persons))

A source added with ``record=True`` also keeps its results on the server: ``recorded`` reads a
time range of them back as a job's result, while the source runs and after it is removed.

Not to be confused with ``tdmi.client.sources``: the frames *this* process reads and pushes with
``stream``. Here the server reads the camera; any number of viewers receive its results.

The REST calls are in ``tdmi.client.calls``. ``watch_source`` reads the viewers' WebSocket
(docs/websocket.md, Camera sources); the async client iterates it, the sync client runs it on a
background loop as it does ``stream``. A watch is not reconnected: the source runs on the
server whether or not anyone watches, so a caller whose connection failed simply watches again.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, overload

import websockets
from pydantic import Field, TypeAdapter
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tdmi.client import calls
from tdmi.client.bridge import iterate_in_thread
from tdmi.client.calls import Instant
from tdmi.client.errors import StreamError
from tdmi.client.streaming import classify_failure
from tdmi.protocol import JobResultPublic, ResultFormat
from tdmi.protocol.sources import SourceCreated, SourceInfo, SourceStatusMessage, ViewerDroppedMessage
from tdmi.protocol.stream import ErrorMessage, ResultMessage

if TYPE_CHECKING:
    from tdmi.client.aio import AsyncPoseClient
    from tdmi.client.client import PoseClient

__all__ = ["AsyncCameraSources", "CameraSources", "ViewerEvent", "watch_source"]

ViewerEvent = ResultMessage | SourceStatusMessage | ViewerDroppedMessage
"""What a watch yields: a frame's ``result``, the source's ``status`` (first the state now, then
each change), or a ``dropped`` notice (this viewer read too slowly; the source did not wait)."""

_VIEWER_MESSAGE: TypeAdapter[ViewerEvent | ErrorMessage] = TypeAdapter(
    Annotated[ViewerEvent | ErrorMessage, Field(discriminator="type")]
)
# a refusal the viewers' WebSocket sends as an ``error`` before its close, by the HTTP status the
# same refusal has in REST, so that ``watch`` raises what ``get`` would (BadRequest for 404)
_REFUSAL_STATUS = {"not_found": 404, "not_implemented": 501, "not_ready": 503}
OPEN_TIMEOUT_S = 10.0
_PlainFormat = Literal["posetrack", "coco"]  # the result formats answered as plain JSON data


def _viewer_url(server_url: str, source_id: str) -> str:
    return calls.ws_url(server_url, calls.source_path(source_id) + "/results")


async def watch_source(url: str, headers: Mapping[str, str]) -> AsyncGenerator[ViewerEvent, None]:
    """The messages of the viewers' WebSocket at ``url`` until the source stops (its ``stopped``
    status is the last item). Refusals raise as the REST calls do; a lost connection raises
    ``StreamClosed`` or ``ServerUnreachable``."""
    try:
        async with websockets.connect(
            url, additional_headers=dict(headers), open_timeout=OPEN_TIMEOUT_S, max_size=None
        ) as ws:
            async for text in ws:
                message = _VIEWER_MESSAGE.validate_json(text)
                if isinstance(message, ErrorMessage):
                    if message.error in _REFUSAL_STATUS:
                        raise calls.error_for(_REFUSAL_STATUS[message.error], message.error, message.detail)
                    raise StreamError(message.error, message.detail, message.frame_id)
                yield message
                if isinstance(message, SourceStatusMessage) and message.status == "stopped":
                    return
    except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError) as exc:
        raise classify_failure(exc, connected_once=False) from None  # never retried


class CameraSources:
    """``PoseClient.sources``: add, list, watch and remove the cameras the server pulls."""

    def __init__(self, client: PoseClient):
        self._client = client

    def add(
        self,
        url: str,
        *,
        model: str | None = None,
        lookahead: int | None = None,
        max_fps: float | None = None,
        record: bool | None = None,
    ) -> SourceCreated:
        """Have the server pull the camera at ``url`` (rtsp://, rtsps://, http:// or https://;
        credentials in it are never shown back). Answers at once, while it is ``connecting``.

        Args:
            model: a loaded model's name; default the server's first.
            lookahead: future frames to wait for before answering a frame, 0..d.
            max_fps: process at most this many frames a second; default the camera's rate.
            record: also append the results to files in the server's data directory, read back by
                time range with ``recorded`` (after the source is removed too) until the jobs'
                retention removes them; default no.
        """
        return self._client.call(
            calls.add_source(url, model=model, lookahead=lookahead, max_fps=max_fps, record=record)
        )

    def list(self) -> builtins.list[SourceInfo]:
        """The sources of this API key (all of them for an admin key)."""
        return self._client.call(calls.list_sources())

    def get(self, source_id: str) -> SourceInfo:
        """Where a source stands: status, frame counts, rates, the last error."""
        return self._client.call(calls.get_source(source_id))

    def watch(self, source_id: str) -> Generator[ViewerEvent, None, None]:
        """Yield the source's messages from now on until it stops (see ``ViewerEvent``)."""
        url, headers = _viewer_url(self._client.url, source_id), calls.auth_headers(self._client.api_key)
        return iterate_in_thread(lambda: watch_source(url, headers))

    def remove(self, source_id: str) -> SourceInfo:
        """Stop the source and free what it held on the server; answers its last state."""
        return self._client.call(calls.remove_source(source_id))

    @overload
    def recorded(
        self, source_id: str, start: Instant, end: Instant | None = None, *, format: Literal["json"] = "json"
    ) -> JobResultPublic: ...
    @overload
    def recorded(
        self, source_id: str, start: Instant, end: Instant | None = None, *, format: _PlainFormat
    ) -> Any: ...
    def recorded(
        self, source_id: str, start: Instant, end: Instant | None = None, *, format: ResultFormat = "json"
    ) -> Any:
        """The results of a source added with ``record=True`` captured from ``start`` to ``end``
        (default: now): epoch seconds, a ``datetime`` (naive is UTC) or the server's text (epoch
        seconds, ISO 8601). In a job's formats: ``json`` a ``JobResultPublic`` whose frames'
        ``index`` is the live frame id and ``pts`` the capture time in epoch seconds; ``posetrack``
        a dict; ``coco`` a list. ``BadRequest`` 404 where nothing was recorded, 422 for a bad range."""
        return self._client.call(calls.source_results(source_id, start, end, format))


class AsyncCameraSources:
    """``AsyncPoseClient.sources``: the methods of ``CameraSources``, awaited."""

    def __init__(self, client: AsyncPoseClient):
        self._client = client

    async def add(
        self,
        url: str,
        *,
        model: str | None = None,
        lookahead: int | None = None,
        max_fps: float | None = None,
        record: bool | None = None,
    ) -> SourceCreated:
        """As ``CameraSources.add``."""
        return await self._client.call(
            calls.add_source(url, model=model, lookahead=lookahead, max_fps=max_fps, record=record)
        )

    async def list(self) -> builtins.list[SourceInfo]:
        return await self._client.call(calls.list_sources())

    async def get(self, source_id: str) -> SourceInfo:
        return await self._client.call(calls.get_source(source_id))

    async def watch(self, source_id: str) -> AsyncGenerator[ViewerEvent, None]:
        """As ``CameraSources.watch``, an async iterator."""
        url, headers = _viewer_url(self._client.url, source_id), calls.auth_headers(self._client.api_key)
        messages = watch_source(url, headers)
        async with contextlib.aclosing(messages):
            async for message in messages:
                yield message

    async def remove(self, source_id: str) -> SourceInfo:
        return await self._client.call(calls.remove_source(source_id))

    @overload
    async def recorded(
        self, source_id: str, start: Instant, end: Instant | None = None, *, format: Literal["json"] = "json"
    ) -> JobResultPublic: ...
    @overload
    async def recorded(
        self, source_id: str, start: Instant, end: Instant | None = None, *, format: _PlainFormat
    ) -> Any: ...
    async def recorded(
        self, source_id: str, start: Instant, end: Instant | None = None, *, format: ResultFormat = "json"
    ) -> Any:
        """As ``CameraSources.recorded``."""
        return await self._client.call(calls.source_results(source_id, start, end, format))
