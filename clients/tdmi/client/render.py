"""Where the command line puts drawn frames: an MP4 file and a window. The drawing itself is
``tdmi.protocol.overlay.draw_poses``, the function the server's overlay videos use. PyAV and OpenCV
(the ``media`` extra) are imported when a file or window opens."""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from tdmi.protocol.media import require

if TYPE_CHECKING:
    import av
    from av.video.stream import VideoStream

__all__ = ["PreviewWindow", "VideoFileWriter", "display_available"]


def display_available() -> bool:
    """A window can open: always on Windows and macOS, with ``DISPLAY``/``WAYLAND_DISPLAY`` elsewhere."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class VideoFileWriter:
    """RGB frames to an MP4 (H.264 when PyAV has libx264, MPEG-4 Part 2 otherwise); the size is
    taken from the first frame, later frames of another size are resized to it."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps
        self._av, self._cv2 = require("av", "writing an MP4"), require("cv2", "writing an MP4")
        self._container: av.container.OutputContainer | None = None
        self._stream: VideoStream | None = None

    def write(self, image: np.ndarray) -> None:
        if self._container is None:
            self._open(image.shape[1] // 2 * 2, image.shape[0] // 2 * 2)
        assert self._container is not None and self._stream is not None
        size = (self._stream.codec_context.width, self._stream.codec_context.height)
        if (image.shape[1], image.shape[0]) != size:
            image = self._cv2.resize(image, size, interpolation=self._cv2.INTER_AREA)
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._container is not None and self._stream is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        self._container = None

    def _open(self, width: int, height: int) -> None:
        codec = "libx264" if "libx264" in self._av.codecs_available else "mpeg4"
        container = self._av.open(str(self.path), mode="w")
        stream = cast(
            "VideoStream", container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
        )
        stream.codec_context.width, stream.codec_context.height = width, height
        stream.codec_context.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 4_000_000
        self._container, self._stream = container, stream


class PreviewWindow:
    """An OpenCV window; ``show`` returns False once the user pressed q or Esc, or closed it."""

    def __init__(self, title: str = "tdmi-client"):
        self.title = title
        self._cv2 = require("cv2", "a preview window")
        self.error: type[Exception] = self._cv2.error  # what ``show`` raises where OpenCV has no GUI

    def show(self, image: np.ndarray) -> bool:
        self._cv2.imshow(self.title, self._cv2.cvtColor(image, self._cv2.COLOR_RGB2BGR))
        key = self._cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        self._cv2.destroyWindow(self.title)
