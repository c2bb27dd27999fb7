"""Reading uploaded videos with PyAV: what a file holds, and its frames as RGB with their own timestamps.

Every frame keeps the presentation timestamp (PTS) of the source, so results and the overlay video
line up with the original frame for frame even when the timing is variable.

What counts as broken (each a :class:`~service.media.MediaError` with a ``kind``):

* the container cannot be opened: ``unsupported_media`` (junk, a cut MP4 whose index is missing:
  these are indistinguishable to the demuxer); a still image (PNG, JPEG, WebP, BMP, TIFF) is
  ``unsupported_media`` too, with a hint: one picture goes on the live WebSocket, not in a job;
* no video stream (audio only): ``no_video_stream``; not one frame: ``no_frames``;
* the decoder fails midway, or the stream ends before the frame count its header declares (an MP4
  cut after its index): ``corrupt``, naming the frame reached. Frames before that point have
  already been yielded; the caller decides whether to keep them. Containers that declare no
  frame count (Matroska, WebM) cut at a cluster boundary read as a shorter video: nothing in the
  file tells them apart;
* above ``max_pixels`` per frame: ``too_large``; longer than ``max_seconds`` or more than
  ``max_frames`` frames: ``too_long`` (checked from the header before decoding, and again on every
  frame while decoding: a header may lie, and a stream may change its resolution midway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from tdmi.service.media import MediaError

if TYPE_CHECKING:
    from tdmi.service.config import Settings

__all__ = ["DecodedFrame", "VideoInfo", "VideoLimits", "iter_frames", "limits_of", "probe_video"]


class VideoLimits(TypedDict):
    """The keyword limits of :func:`probe_video` and :func:`iter_frames`; ``None`` is no limit."""

    max_pixels: int | None
    max_seconds: float | None
    max_frames: int | None


def limits_of(settings: Settings) -> VideoLimits:
    """The service's limits for uploaded videos."""
    return VideoLimits(
        max_pixels=settings.max_video_pixels,
        max_seconds=settings.max_video_seconds,
        max_frames=settings.max_video_frames,
    )


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file. ``duration`` is in seconds, ``fps`` the average rate."""

    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    num_frames: int
    duration: float
    codec: str
    container: str


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One frame in presentation order: ``image`` is RGB uint8 (H, W, 3), ``pts`` in ``time_base`` units."""

    index: int
    pts: int
    time_base: Fraction
    image: np.ndarray

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)


def probe_video(
    path: str | Path,
    *,
    max_pixels: int | None = None,
    max_seconds: float | None = None,
    max_frames: int | None = None,
    name: str | None = None,
) -> VideoInfo:
    """Describe the first video stream; frames are counted by demuxing when the header has no count.
    Errors call the file ``name`` (the user's file name of an upload), else by its own name."""
    name = name or Path(path).name
    with _open(path, name) as container:
        stream = _video_stream(container, name)
        _refuse_still_image(container, name)
        num_frames = stream.frames or _count_packets(container, stream, name)
        if num_frames == 0:
            raise MediaError("no_frames", f"{name}: the video stream has no frames")
        info = _describe(container, stream, num_frames)
    _check_limits(info, name, max_pixels, max_seconds, max_frames)
    return info


def iter_frames(
    path: str | Path,
    *,
    max_pixels: int | None = None,
    max_seconds: float | None = None,
    max_frames: int | None = None,
    name: str | None = None,
) -> Iterator[DecodedFrame]:
    """Decode every frame of the first video stream, in presentation order, with the source PTS;
    errors call the file ``name``, as in ``probe_video``."""
    name = name or Path(path).name
    with _open(path, name) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO"
        declared_frames = stream.frames
        info = _describe(container, stream, declared_frames)
        _check_limits(info, name, max_pixels, max_seconds, max_frames)
        time_base = info.time_base
        ticks_per_frame = 1 / (info.fps * time_base) if info.fps else Fraction(1)
        index = packets = 0
        first_seconds: float | None = None
        try:
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                for frame in packet.decode():
                    if max_pixels is not None and frame.width * frame.height > max_pixels:
                        raise _too_large(name, frame.width, frame.height, max_pixels)
                    if max_frames is not None and index >= max_frames:
                        raise _too_many(name, max_frames)
                    pts = frame.pts if frame.pts is not None else round(index * ticks_per_frame)
                    decoded = DecodedFrame(index, pts, time_base, frame.to_ndarray(format="rgb24"))
                    first_seconds = decoded.seconds if first_seconds is None else first_seconds
                    if max_seconds is not None and decoded.seconds - first_seconds > max_seconds:
                        raise _too_long(name, decoded.seconds - first_seconds, max_seconds)
                    yield decoded
                    index += 1
        except av.FFmpegError as exc:
            raise MediaError(
                "corrupt", f"{name}: video data is damaged after frame {index} ({_reason(exc)})"
            ) from exc
    if index == 0:
        raise MediaError("no_frames", f"{name}: no frame of the video stream could be decoded")
    if packets < declared_frames:
        raise MediaError(
            "corrupt",
            f"{name}: video data ends after frame {index} of the {declared_frames} its header declares "
            "(file truncated?)",
        )


@contextmanager
def _open(path: str | Path, name: str) -> Iterator[InputContainer]:
    try:
        container = av.open(str(path), mode="r")
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except av.FFmpegError as exc:
        raise MediaError("unsupported_media", f"{name}: not a readable video file ({_reason(exc)})") from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: InputContainer, name: str) -> VideoStream:
    if not container.streams.video:
        kinds = sorted({str(s.type) for s in container.streams}) or ["none"]
        raise MediaError("no_video_stream", f"{name}: no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _refuse_still_image(container: InputContainer, name: str) -> None:
    """FFmpeg reads a PNG or JPEG as a one-frame video; a job is for videos (README, "Bad input")."""
    demuxer = container.format.name
    if demuxer == "image2" or demuxer.endswith("_pipe"):
        kind = demuxer.removesuffix("_pipe").upper()
        raise MediaError(
            "unsupported_media",
            f"{name}: a still image ({kind}), not a video; send single images as frames on "
            "the WebSocket /v1/stream, or a 1-frame video",
        )


def _count_packets(container: InputContainer, stream: VideoStream, name: str) -> int:
    try:
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.FFmpegError as exc:
        raise MediaError("corrupt", f"{name}: video data is damaged ({_reason(exc)})") from exc


def _describe(container: InputContainer, stream: VideoStream, num_frames: int) -> VideoInfo:
    time_base = stream.time_base or Fraction(1, 90000)
    if stream.duration:
        duration = float(stream.duration * time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not fps and duration > 0:
        fps = Fraction(num_frames / duration).limit_denominator(1001)
    if not duration and fps:  # a file written to a pipe has no duration in its header
        duration = float(num_frames / fps)
    return VideoInfo(
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=Fraction(fps or 0),
        time_base=Fraction(time_base),
        num_frames=num_frames,
        duration=duration,
        codec=stream.codec_context.name,
        container=container.format.name,
    )


def _check_limits(
    info: VideoInfo, name: str, max_pixels: int | None, max_seconds: float | None, max_frames: int | None
) -> None:
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise _too_large(name, info.width, info.height, max_pixels)
    if max_seconds is not None and info.duration > max_seconds:
        raise _too_long(name, info.duration, max_seconds)
    if max_frames is not None and info.num_frames > max_frames:
        raise _too_many(name, max_frames)


def _too_large(name: str, width: int, height: int, max_pixels: int) -> MediaError:
    return MediaError(
        "too_large", f"{name}: frames of {width}x{height} exceed the limit of {max_pixels} pixels"
    )


def _too_long(name: str, seconds: float, max_seconds: float) -> MediaError:
    return MediaError("too_long", f"{name}: {seconds:.2f} s of video exceeds the limit of {max_seconds:g} s")


def _too_many(name: str, max_frames: int) -> MediaError:
    return MediaError("too_long", f"{name}: the video has more than the limit of {max_frames} frames")


def _reason(exc: av.FFmpegError) -> str:
    """FFmpeg's short error text (``Invalid data found when processing input``), never PyAV's
    full message, which names the file's path on this server."""
    return str(exc.strerror or "unreadable data").strip()
