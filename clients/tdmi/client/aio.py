"""``AsyncPoseClient``: the asyncio twin of ``PoseClient``, with the same methods awaited.

    async with AsyncPoseClient(url, api_key=key) as client:
        job = await client.submit("clip.mp4")
        await job.wait()
        result = await job.result()
        async for event in client.stream("clip.mp4"):
            ...

Requests and answers are described once in ``tdmi.client.calls``; the stream engine is
``tdmi.client.streaming``, which the sync client runs on a background loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import httpx

from tdmi.client import calls
from tdmi.client.camera_sources import AsyncCameraSources
from tdmi.client.client import DEFAULT_URL
from tdmi.client.events import StreamEvent
from tdmi.client.sources import FrameSource, Source, open_source
from tdmi.client.streaming import StreamOptions, stream_events
from tdmi.client.waiting import JobWaiter
from tdmi.protocol import JobPublic, JobResultPublic, ModelsPublic, ResultFormat
from tdmi.protocol.stream import BoxMode

__all__ = ["AsyncJob", "AsyncPoseClient"]

T = TypeVar("T")


class AsyncPoseClient:
    """A connection to one pose server; ``api_key`` is sent as ``Authorization: Bearer``."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.api_key = api_key
        headers = calls.auth_headers(api_key)
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)
        self.sources = AsyncCameraSources(self)  # the cameras the server pulls

    async def __aenter__(self) -> AsyncPoseClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: calls.Call[T]) -> T:
        files = calls.open_upload(call)
        try:
            response = await self._http.request(call.method, call.path, **calls.request_options(call, files))
        except httpx.TransportError as exc:
            raise calls.unreachable(self.url, exc) from None
        finally:
            if files:
                files["file"][1].close()
        return call.parse(response)

    async def models(self) -> ModelsPublic:
        return await self.call(calls.list_models())

    async def submit(
        self,
        video: str | Path,
        *,
        model: str | None = None,
        lookahead: int | None = None,
        render: bool = False,
        boxes: dict[str, list[list[float]]] | None = None,
    ) -> AsyncJob:
        """Upload ``video`` as a job and return its handle (arguments as in ``PoseClient.submit``)."""
        return AsyncJob(
            self,
            (
                await self.call(
                    calls.submit_job(video, model=model, lookahead=lookahead, render=render, boxes=boxes)
                )
            ).job_id,
        )

    def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, job_id)

    async def stream(
        self,
        source: Source | FrameSource,
        *,
        model: str | None = None,
        lookahead: int | None = None,
        detector: BoxMode | None = None,
        detect_every: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        keep_images: bool | None = None,
        options: StreamOptions | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream a live source; yields events in frame order (arguments as in ``PoseClient.stream``)."""
        stream_options = (options or StreamOptions()).overridden(
            model=model,
            lookahead=lookahead,
            detector=detector,
            detect_every=detect_every,
            fps=fps,
            max_frames=max_frames,
            keep_images=keep_images,
        )
        frames = open_source(source)
        url, headers = calls.ws_url(self.url), calls.auth_headers(self.api_key)
        events = stream_events(url, headers, frames, stream_options)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event


class AsyncJob:
    """A video job on the server (async methods)."""

    def __init__(self, client: AsyncPoseClient, job_id: str):
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r})"

    async def status(self) -> JobPublic:
        return await self.client.call(calls.get_job(self.id))

    async def wait(
        self, progress: bool = False, poll_s: float = 0.5, timeout_s: float | None = None
    ) -> JobPublic:
        waiter = JobWaiter(progress, poll_s, timeout_s)
        try:
            while (done := waiter.step(await self.status())) is None:
                await asyncio.sleep(waiter.poll_s)
        finally:
            waiter.close()
        return done

    @overload
    async def result(self, format: Literal["json"] = "json") -> JobResultPublic: ...
    @overload
    async def result(self, format: Literal["posetrack", "coco"]) -> Any: ...
    async def result(self, format: ResultFormat = "json") -> Any:
        return await self.client.call(calls.get_result(self.id, format))

    async def download_video(self, path: str | Path) -> Path:
        path = Path(path)
        try:
            async with self.client._http.stream("GET", calls.video_path(self.id)) as response:
                if not response.is_success:
                    await response.aread()
                calls.raise_for_error(response)
                with path.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise calls.unreachable(self.client.url, exc) from None
        return path

    async def cancel(self) -> JobPublic:
        """Cancel the job if it has not finished, and delete it with its files; answers its last state."""
        return await self.client.call(calls.cancel_job(self.id))
