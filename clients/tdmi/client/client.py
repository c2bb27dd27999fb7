"""``PoseClient``: the synchronous Python SDK (video jobs over REST, live feeds over WebSocket).

    from tdmi.client import PoseClient

    with PoseClient("http://127.0.0.1:8000", api_key="...") as client:
        job = client.submit("clip.mp4", render=True)
        job.wait(progress=True)
        result = job.result()  # a protocol.JobResultPublic
        for event in client.stream(0):  # webcam 0
            ...

Requests and answers are described once in ``tdmi.client.calls``; this module only sends them.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import httpx

from tdmi.client import calls
from tdmi.client.bridge import iterate_in_thread
from tdmi.client.camera_sources import CameraSources
from tdmi.client.events import StreamEvent
from tdmi.client.sources import FrameSource, Source, open_source
from tdmi.client.streaming import StreamOptions, stream_events
from tdmi.client.waiting import JobWaiter
from tdmi.protocol import JobPublic, JobResultPublic, ModelsPublic, ResultFormat
from tdmi.protocol.stream import BoxMode

__all__ = ["Job", "PoseClient"]

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"


class PoseClient:
    """A connection to one pose server; ``api_key`` is sent as ``Authorization: Bearer``."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.Client(base_url=self.url, headers=calls.auth_headers(api_key), timeout=timeout)
        self.sources = CameraSources(self)  # the cameras the server pulls

    def __enter__(self) -> PoseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: calls.Call[T]) -> T:
        """Send one request of ``tdmi.client.calls`` and parse its answer (raising the server's error)."""
        files = calls.open_upload(call)
        try:
            response = self._http.request(call.method, call.path, **calls.request_options(call, files))
        except httpx.TransportError as exc:
            raise calls.unreachable(self.url, exc) from None
        finally:
            if files:
                files["file"][1].close()
        return call.parse(response)

    def models(self) -> ModelsPublic:
        return self.call(calls.list_models())

    def submit(
        self,
        video: str | Path,
        *,
        model: str | None = None,
        lookahead: int | None = None,
        render: bool = False,
        boxes: dict[str, list[list[float]]] | None = None,
    ) -> Job:
        """Upload ``video`` (a file path) as a job and return its handle.

        Args:
            model: a loaded model's name (``models()``); default the server's first.
            lookahead: future frames each clip may use, 0..d; default d, the model's full window.
            render: also draw an overlay MP4 on the server (``Job.download_video``).
            boxes: ``{"frame index": [[x1, y1, x2, y2(, score)], ...]}``: the persons of those frames
                in source pixels; when given, no detector runs.
        """
        return Job(
            self,
            self.call(
                calls.submit_job(video, model=model, lookahead=lookahead, render=render, boxes=boxes)
            ).job_id,
        )

    def job(self, job_id: str) -> Job:
        """A handle on an existing job."""
        return Job(self, job_id)

    def stream(
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
    ) -> Generator[StreamEvent, None, None]:
        """Stream a live source and yield events in frame order (see ``tdmi.client.streaming``).

        Args:
            source: webcam index, video file, RTSP/HTTP URL, or an iterable of RGB images.
            model: a loaded model's name; default the server's first.
            lookahead: future frames to wait for before answering a frame, 0..d (0: lowest latency).
            detector: ``"auto"`` (the server's detector), ``"client"`` (boxes you send) or ``"none"``.
            detect_every: run the detector every N frames, propagating boxes in between.
            fps: send at most this many frames per second; default as fast as the window allows.
            max_frames: stop after this many frames of the source.
            keep_images: attach each RGB frame to its event (for drawing); default True.
            options: every other setting (JPEG quality, ack window, reconnection): a ``StreamOptions``,
                whose fields the arguments above replace when given.
        """
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
        return iterate_in_thread(lambda: stream_events(url, headers, frames, stream_options))


class Job:
    """A video job on the server."""

    def __init__(self, client: PoseClient, job_id: str):
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobPublic:
        return self.client.call(calls.get_job(self.id))

    def wait(self, progress: bool = False, poll_s: float = 0.5, timeout_s: float | None = None) -> JobPublic:
        """Poll until the job is over; ``JobFailed`` when it failed or was cancelled."""
        waiter = JobWaiter(progress, poll_s, timeout_s)
        try:
            while (done := waiter.step(self.status())) is None:
                time.sleep(waiter.poll_s)
        finally:
            waiter.close()
        return done

    @overload
    def result(self, format: Literal["json"] = "json") -> JobResultPublic: ...
    @overload
    def result(self, format: Literal["posetrack", "coco"]) -> Any: ...
    def result(self, format: ResultFormat = "json") -> Any:
        """``json``: ``JobResultPublic``; ``posetrack``: a PoseTrack 2018 dict; ``coco``: a list."""
        return self.client.call(calls.get_result(self.id, format))

    def download_video(self, path: str | Path) -> Path:
        """Save the overlay MP4 (the job must have been submitted with ``render=True``)."""
        path = Path(path)
        try:
            with self.client._http.stream("GET", calls.video_path(self.id)) as response:
                calls.raise_for_error(response)
                with path.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise calls.unreachable(self.client.url, exc) from None
        return path

    def cancel(self) -> JobPublic:
        """Cancel the job if it has not finished, and delete it with its files; answers its last state."""
        return self.client.call(calls.cancel_job(self.id))
