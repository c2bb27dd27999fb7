"""The live overlay of one source: the newest processed frame with its poses drawn, as a JPEG.

Every MJPEG watcher of a source shares one picture: a processed frame is drawn and encoded once,
only while someone watches, at most ``max_fps`` times a second, and never twice at once (a frame
that comes while the previous one is still being encoded is not drawn). Drawing is the one the
overlay videos of jobs use (``tdmi.protocol.overlay.draw_poses``).

``SharedPicture`` is the part the watchers see: the newest JPEG and a wake-up for each new one.
An API node of a cluster has only that part: its pictures are drawn on the worker that runs the
source and relayed through Redis (``tdmi.service.sources.hosted``, ``remote``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import cv2
import numpy as np

from tdmi.protocol.overlay import draw_poses
from tdmi.protocol.poses import PersonPose

__all__ = ["MJPEG_BOUNDARY", "LiveOverlay", "SharedPicture", "mjpeg_part"]

log = logging.getLogger("tdmi.sources")
MJPEG_BOUNDARY = "tdmi-frame"
JPEG_QUALITY = 80


def mjpeg_part(jpeg: bytes) -> bytes:
    """One part of a ``multipart/x-mixed-replace`` answer."""
    head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"


def _drawn_jpeg(
    image: np.ndarray, persons: list[PersonPose], skeleton: Sequence[tuple[int, int]], threshold: float
) -> bytes:
    drawn = draw_poses(image, persons, skeleton, threshold)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {image.shape}")
    return data.tobytes()


class SharedPicture:
    """The newest picture of a source and the watchers waiting for the next one (event loop only)."""

    def __init__(self) -> None:
        self.watchers = 0
        self._jpeg: bytes | None = None
        self._new = asyncio.Event()  # set, and replaced, at each new picture and at the end
        self._closed = False

    def show(self, jpeg: bytes) -> None:
        """A new picture for every watcher."""
        self._jpeg = jpeg
        self._wake()

    def end(self) -> None:
        """End every watcher's stream."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._new.set()
        self._new = asyncio.Event()

    async def frames(self) -> AsyncIterator[bytes]:
        """Each new picture, for one watcher, until the source closes: the newest one at once."""
        self.watchers += 1
        try:
            sent: bytes | None = None
            while True:
                while not self._closed and self._jpeg is sent:
                    await self._new.wait()
                if self._closed:
                    return
                sent = self._jpeg
                assert sent is not None
                yield sent
        finally:
            self.watchers -= 1
            if not self.watchers:  # the next watcher must not start with an old picture
                self._jpeg = None


class LiveOverlay(SharedPicture):
    """The watchers' picture drawn here, from the source's processed frames."""

    def __init__(self, skeleton: Sequence[tuple[int, int]], score_threshold: float, max_fps: float):
        super().__init__()
        self.skeleton, self.score_threshold = skeleton, score_threshold
        self.min_interval_s = 1.0 / max_fps
        self.encoded = 0  # frames drawn and encoded (for the tests and /metrics)
        self._encoding: asyncio.Task[None] | None = None
        self._last_at = 0.0

    def offer(self, image: np.ndarray, persons: list[PersonPose]) -> None:
        """A processed frame: drawn in the background if someone watches and it is time."""
        now = time.monotonic()
        busy = self._encoding is not None and not self._encoding.done()
        if self._closed or not self.watchers or busy or now - self._last_at < self.min_interval_s:
            return
        self._last_at = now
        self._encoding = asyncio.create_task(self._encode(image, persons), name="source-overlay")

    async def _encode(self, image: np.ndarray, persons: list[PersonPose]) -> None:
        try:
            jpeg = await asyncio.to_thread(_drawn_jpeg, image, persons, self.skeleton, self.score_threshold)
        except (ValueError, cv2.error) as exc:  # this frame has no picture; the next one may
            log.warning("overlay frame not drawn: %s", exc)
            return
        self.encoded += 1
        self.show(jpeg)

    async def close(self) -> None:
        """End every watcher's stream and the encode in flight."""
        self._closed = True
        if self._encoding is not None:
            self._encoding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._encoding
        self.end()
