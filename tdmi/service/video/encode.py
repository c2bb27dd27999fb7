"""Writing the overlay video: an MP4 whose frames keep the source's timestamps.

Each frame is written at the source PTS, so the overlay has the same frame count, frame rate and
per-frame timing as the upload, variable frame rate included, and a player can show the two side
by side. A source that starts before time 0 (an MPEG-TS clock that wrapped) is shifted to start at
0: an MP4 hides frames before 0 behind an edit list (3 frames of 12 were lost so). The file
appears only when complete: it is written under a hidden temporary name and renamed on a clean
close, so a half-written overlay is never served.
"""

from __future__ import annotations

import operator
import os
from fractions import Fraction
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import SupportsIndex

import av
import numpy as np
from av.video.stream import VideoStream

from tdmi.service.video.decode import VideoInfo

__all__ = ["OverlayWriter", "overlay_codec"]

# MPEG-4 Part 2 cannot count time in units finer than 1/65535 s; 1/60000 s holds 1000- and
# 1001-based frame rates exactly.
_MPEG4_MAX_TIME_BASE_DEN = 65535
_MPEG4_TIME_BASE = Fraction(1, 60000)
_FF_QP2LAMBDA = 118  # FFmpeg's scale from quantiser to the lambda that global_quality holds


@cache
def overlay_codec() -> str:
    """H.264 when this PyAV build has libx264 (plays everywhere), else MPEG-4 Part 2 (always built in)."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class OverlayWriter:
    """Context manager writing RGB frames to an MP4 at given source PTS (yuv420p, odd sizes padded).

    A frame is encoded once the next one arrives: its duration (the gap to the next PTS) goes into
    the file, so the last frame lasts as long as the one before it and the average rate matches.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        time_base: Fraction,
        fps: Fraction,
        *,
        codec: str | None = None,
    ):
        if width <= 0 or height <= 0:
            raise ValueError(f"overlay size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.source_time_base = Fraction(time_base)
        self.codec = codec or overlay_codec()
        self.frames_written = 0
        self._time_base = self._encoder_time_base()
        self._nominal_duration = max(1, round(1 / (fps * self._time_base))) if fps else 1
        self._pending: tuple[av.VideoFrame, int] | None = None  # (frame, pts in encoder time base)
        self._shift: int | None = None  # added to every pts: minus the first one's if that is negative
        self._durations: dict[int, int] = {}  # pts -> duration of frames inside the encoder
        self._last_duration = 0
        self._tmp_path = self.path.with_name(f".{self.path.name}.part")
        self._container = av.open(
            str(self._tmp_path), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        try:
            self._stream = self._add_stream(Fraction(fps) if fps else None)
        except BaseException:
            self.abort()
            raise

    @classmethod
    def for_video(cls, path: str | Path, info: VideoInfo, *, codec: str | None = None) -> OverlayWriter:
        """A writer matching a probed source: same size, time base and frame rate."""
        return cls(path, info.width, info.height, info.time_base, info.fps, codec=codec)

    def write(self, image: np.ndarray, pts: SupportsIndex) -> None:
        """Add one RGB uint8 (H, W, 3) frame shown at ``pts``, an integer in source time base units.

        A PTS not after the previous one (broken source timelines) moves one tick later rather than
        failing the whole overlay; a frame of another size is scaled to the overlay's.
        """
        try:
            ticks = operator.index(pts)
        except TypeError:  # a float here is almost surely seconds, which would collapse the timeline
            raise TypeError(f"pts must be an integer in time base units, got {pts!r}") from None
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"overlay frame must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        even_width, even_height = self.width + self.width % 2, self.height + self.height % 2
        if image.shape[:2] == (self.height, self.width) and (self.width % 2 or self.height % 2):
            image = np.pad(image, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        # a source that changes its resolution midway keeps the overlay's size: such frames are scaled
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            width=even_width, height=even_height, format="yuv420p"
        )
        encoded_pts = round(ticks * self.source_time_base / self._time_base)
        if self._shift is None:
            self._shift = max(0, -encoded_pts)
        encoded_pts += self._shift
        if self._pending is not None:
            encoded_pts = max(encoded_pts, self._pending[1] + 1)
            self._encode(*self._pending, duration=encoded_pts - self._pending[1])
        self._pending = frame, encoded_pts
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and move it to ``path``."""
        if self._pending is not None:
            self._encode(*self._pending, duration=self._last_duration or self._nominal_duration)
            self._pending = None
        self._mux(self._stream.encode(None))
        self._container.close()
        os.replace(self._tmp_path, self.path)

    def abort(self) -> None:
        """Drop the unfinished file."""
        self._container.close()
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _add_stream(self, fps: Fraction | None) -> VideoStream:
        stream = self._container.add_stream(self.codec, rate=fps)
        if not isinstance(stream, VideoStream):
            raise ValueError(f"{self.codec} is not a video encoder")
        stream.width, stream.height = self.width + self.width % 2, self.height + self.height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = self._time_base
        if self.codec == "libx264":
            stream.codec_context.options = {"preset": "veryfast", "crf": "23"}
        else:  # fixed quantiser 4: the default 200 kb/s target smears thin skeleton lines
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = 4 * _FF_QP2LAMBDA
        return stream

    def _encode(self, frame: av.VideoFrame, pts: int, duration: int) -> None:
        frame.pts, frame.time_base = pts, self._time_base
        self._durations[pts] = self._last_duration = duration
        self._mux(self._stream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            assert packet.pts is not None  # encoders stamp every packet with its frame's pts
            packet.duration = self._durations.pop(packet.pts)
        self._container.mux(packets)

    def _encoder_time_base(self) -> Fraction:
        if self.codec == "mpeg4" and self.source_time_base.denominator > _MPEG4_MAX_TIME_BASE_DEN:
            return _MPEG4_TIME_BASE
        return self.source_time_base
