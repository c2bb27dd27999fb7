"""Live sources for ``stream``: a webcam index, a video file, an RTSP/HTTP URL or an iterator of images.

Every source gives ``Frame``s: an RGB uint8 image and its capture timestamp in seconds (the
frame's presentation time for a file, the wall clock for cameras, URLs and iterators). A *live*
source (camera, URL) runs on its own clock: when the stream cannot keep up, its older frames are
skipped rather than queued, so what is sent stays current. Files need PyAV, cameras, URLs and
JPEG encoding OpenCV: both come with the SDK's ``media`` extra and are imported on first use.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tdmi.client.errors import SourceError
from tdmi.protocol.media import require

__all__ = ["Frame", "FrameSource", "Source", "encode_jpeg", "open_source"]

# what ``stream`` accepts: a webcam index, a file path, a URL, or images (RGB uint8, H x W x 3)
Source = int | str | Path | Iterable[np.ndarray]
_URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # RGB uint8 (H, W, 3)
    timestamp: float  # capture time, seconds


class FrameSource:
    """An iterator of ``Frame``s with a ``close`` that releases the camera or file."""

    def __init__(self, frames: Iterator[Frame], *, live: bool, name: str):
        self._frames, self.live, self.name = frames, live, name

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> Frame:
        return next(self._frames)

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


def open_source(source: Source | FrameSource) -> FrameSource:
    """Pick the reader for ``source``; raises ``SourceError`` when it cannot be opened."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, bool):
        raise SourceError(f"not a source: {source!r}")
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        name = f"camera {source}"
        return FrameSource(_capture(require("cv2", name), int(source), name), live=True, name=name)
    if isinstance(source, str) and source.lower().startswith(_URL_SCHEMES):
        return FrameSource(_capture(require("cv2", source), source, source), live=True, name=source)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"{path}: no such file (and not a camera index or a URL)")
        return FrameSource(_video_file(require("av", str(path)), path), live=False, name=str(path))
    if isinstance(source, Iterable):
        return FrameSource(_images(source), live=False, name="images")
    raise SourceError(f"not a source: {type(source).__name__} (give a camera index, a path, a URL or images)")


def check_image(image: Any) -> np.ndarray:
    """The image as given when it is RGB uint8 (H, W, 3); ``SourceError`` otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise SourceError(
            f"images must be RGB uint8 arrays (H, W, 3), got {type(image).__name__} "
            f"{getattr(image, 'dtype', '')} {shape if shape is not None else ''}".rstrip()
        )
    return image


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    cv2 = require("cv2", "JPEG encoding of frames")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def _video_file(av: ModuleType, path: Path) -> Iterator[Frame]:
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: not a readable video ({exc})") from None
    with container:
        if not container.streams.video:
            raise SourceError(f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        try:
            for index, decoded in enumerate(container.decode(stream)):
                time_s = decoded.time if decoded.time is not None else index / rate
                yield Frame(decoded.to_ndarray(format="rgb24"), float(time_s))
        except av.FFmpegError as exc:
            raise SourceError(f"{path}: decoding failed ({exc})") from None


def _capture(cv2: ModuleType, target: int | str, name: str) -> Iterator[Frame]:
    capture = cv2.VideoCapture(target)
    try:
        if not capture.isOpened():
            raise SourceError(f"{name}: cannot open (no such camera, or the URL does not answer)")
        while True:
            ok, image = capture.read()
            if not ok:
                return  # the camera stopped or the remote stream ended
            yield Frame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), time.time())
    finally:
        capture.release()


def _images(images: Iterable[Any]) -> Iterator[Frame]:
    for image in images:
        yield Frame(check_image(image), time.time())
