"""Reading uploaded videos with PyAV: what a file holds, and its frames as upright RGB with their timestamps.

Every frame keeps the presentation timestamp (PTS) of the source, so results and the overlay video
line up with the original frame for frame even when the timing is variable.

Headers before pixels. FFmpeg's stream probing decodes the first frames whatever their size (a
750 KB H.264 file of one 16000x16000 frame cost 588 MiB before its 413), so files are opened with
every decoder barred from it (``codec_whitelist``) and the limits are checked on what headers
say: the container's size, duration and frame count, then the size the codec's own headers give
(an H.264 sequence header), read by the codec's parser from the first packet and every key frame
before the decoder sees them: a container may say 160x160 over 16000x16000 frames, and a stream
may grow midway. The decoder runs with FFmpeg's ``max_pixels``, which refuses a larger frame
before allocating it, whatever the parser missed (VP9 and MJPEG parsers read no size; a size
changed at a non-key frame): H.264 then costs only its per-macroblock tables, up to 85 MiB per
decoder thread at 16000x16000. ``DECODER_THREADS`` bounds the threads, each holding frames.

Media as people record it:

* **rotation**: phones store pixels as the sensor reads them and a display matrix saying how to
  turn them; frames are turned upright, and the size reported is the displayed one, as live
  frames honour their EXIF orientation;
* **the video stream**: of a file's video streams (cover pictures aside), those the container
  marks default if it marks any, else all; of these the largest, the first on a tie;
  :attr:`VideoInfo.stream` says which;
* **corrupt frames**: a frame the decoder refuses is skipped and counted, up to
  ``max_corrupt_frames``; one more fails the reading as ``corrupt``;
* **edit lists**: a file's frame count is taken from its index after the edit list (an MP4 that
  hides leading frames), so hidden frames are not mistaken for a truncated file.

What counts as broken (each a :class:`~tdmi.service.media.MediaError` with a ``kind``):

* the container cannot be opened: ``unsupported_media`` (junk, a cut MP4 whose index is missing:
  these are indistinguishable to the demuxer); a still image (PNG, JPEG, WebP, BMP, TIFF) is
  ``unsupported_media`` too, with a hint: one picture goes on the live WebSocket, not in a job;
* no video stream (audio only, a cover picture): ``no_video_stream``; not one frame: ``no_frames``;
* more frames than ``max_corrupt_frames`` that do not decode, a demuxer that fails midway, or a
  stream that ends before the frame count its header declares (an MP4 cut after its index):
  ``corrupt``, naming the frame reached. Frames before that point have already been yielded; the
  caller decides whether to keep them. Containers that declare no frame count (Matroska, WebM)
  cut at a cluster boundary read as a shorter video: nothing in the file tells them apart;
* above ``max_pixels`` per frame: ``too_large``; longer than ``max_seconds`` or more than
  ``max_frames`` frames: ``too_long`` (checked from the headers before decoding, and again on
  every frame while decoding: a header may lie, and a stream may change its resolution midway).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

import av
import numpy as np
from av.container import InputContainer
from av.stream import Disposition
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream
from PIL import Image

from tdmi.service.media import MediaError

if TYPE_CHECKING:
    from tdmi.service.config import Settings

__all__ = [
    "DECODER_THREADS",
    "DecodedFrame",
    "VideoFrames",
    "VideoInfo",
    "VideoLimits",
    "iter_frames",
    "limits_of",
    "probe_video",
]

# FFmpeg's default is a thread per core (17 on a 16-core host), each holding frames in flight;
# two keep a job's decoding ahead of its model, which is the slower of the two
DECODER_THREADS = 2
# no decoder may run while a file is opened: FFmpeg's probing would decode frames of any size
_HEADERS_ONLY = {"codec_whitelist": "none"}


class VideoLimits(TypedDict, total=False):
    """The keyword limits of :func:`probe_video`, :class:`VideoFrames` and :func:`iter_frames`; one
    left out or ``None`` is no limit (``max_corrupt_frames`` left out: none is skipped)."""

    max_pixels: int | None
    max_seconds: float | None
    max_frames: int | None
    max_corrupt_frames: int


def limits_of(settings: Settings) -> VideoLimits:
    """The service's limits for uploaded videos."""
    return VideoLimits(
        max_pixels=settings.max_video_pixels,
        max_seconds=settings.max_video_seconds,
        max_frames=settings.max_video_frames,
        max_corrupt_frames=settings.max_corrupt_frames,
    )


@dataclass(frozen=True)
class VideoInfo:
    """The chosen video stream of a file, as displayed: ``width`` and ``height`` are those of the
    upright frames, ``rotation`` the degrees (0, 90, 180, 270) by which the stored frames are turned
    clockwise to be upright (90: a phone held upright); ``stream`` its index among the file's
    streams. ``duration`` is in seconds, ``fps`` the average rate."""

    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    num_frames: int
    duration: float
    codec: str
    container: str
    stream: int
    rotation: int


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One frame in presentation order: ``image`` is upright RGB uint8 (H, W, 3), ``pts`` in
    ``time_base`` units."""

    index: int
    pts: int
    time_base: Fraction
    image: np.ndarray

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)


def probe_video(path: str | Path, *, name: str | None = None, **limits: Unpack[VideoLimits]) -> VideoInfo:
    """Describe the chosen video stream: its limits are checked on its headers, then its first frame
    is decoded for the size and rotation it is shown at; frames are counted by demuxing when the
    header has no count. Errors call the file ``name`` (the user's file name of an upload), else
    by its own name."""
    name = name or Path(path).name
    with _open(path, name) as container:
        stream = _video_stream(container, name)
        _refuse_still_image(container, path, name)
        declared_frames = _declared_frames(stream)
        _check_limits(_describe(container, stream, declared_frames), name, limits)
        reading = _Reading()
        with closing(_decode(container, stream, name, limits, reading)) as frames:
            first = next(frames, None)
        if first is None:
            raise MediaError("no_frames", f"{name}: no frame of the video stream could be decoded")
        num_frames = declared_frames or reading.packets + _count_packets(container, stream, name)
        info = _describe(container, stream, num_frames, first)
    _check_limits(info, name, limits)
    return info


class VideoFrames:
    """Every frame of the chosen video stream, upright, in presentation order, with the source PTS;
    one pass. ``corrupt_frames`` counts the frames skipped because they did not decode (within
    ``max_corrupt_frames``). Errors call the file ``name``, as in ``probe_video``."""

    def __init__(self, path: str | Path, *, name: str | None = None, **limits: Unpack[VideoLimits]):
        self.path = path
        self.name = name or Path(path).name
        self.limits = limits
        self._reading = _Reading()

    @property
    def corrupt_frames(self) -> int:
        return self._reading.corrupt

    def __iter__(self) -> Iterator[DecodedFrame]:
        name, limits = self.name, self.limits
        max_pixels, max_frames = limits.get("max_pixels"), limits.get("max_frames")
        max_seconds = limits.get("max_seconds")
        with _open(self.path, name) as container:
            stream = _video_stream(container, name)
            declared_frames = _declared_frames(stream)
            info = _describe(container, stream, declared_frames)
            _check_limits(info, name, limits)
            time_base = info.time_base
            ticks_per_frame = 1 / (info.fps * time_base) if info.fps else Fraction(1)
            index = 0
            first_seconds: float | None = None
            reading = self._reading
            for frame in _decode(container, stream, name, limits, reading):
                if max_pixels is not None and frame.width * frame.height > max_pixels:
                    raise _too_large(name, frame.width, frame.height, max_pixels)
                if max_frames is not None and index >= max_frames:
                    raise _too_many(name, max_frames)
                pts = frame.pts if frame.pts is not None else round(index * ticks_per_frame)
                decoded = DecodedFrame(index, pts, time_base, _upright(frame))
                first_seconds = decoded.seconds if first_seconds is None else first_seconds
                if max_seconds is not None and decoded.seconds - first_seconds > max_seconds:
                    raise _too_long(name, decoded.seconds - first_seconds, max_seconds)
                yield decoded
                index += 1
        if index == 0:
            raise MediaError("no_frames", f"{name}: no frame of the video stream could be decoded")
        if reading.packets < declared_frames:
            raise MediaError(
                "corrupt",
                f"{name}: video data ends after frame {index} of the {declared_frames} its header "
                "declares (file truncated?)",
            )


def iter_frames(
    path: str | Path, *, name: str | None = None, **limits: Unpack[VideoLimits]
) -> Iterator[DecodedFrame]:
    """The frames of :class:`VideoFrames`, for a caller that needs no count of corrupt ones."""
    return iter(VideoFrames(path, name=name, **limits))


@contextmanager
def _open(path: str | Path, name: str) -> Iterator[InputContainer]:
    try:
        container = av.open(str(path), mode="r", options=_HEADERS_ONLY)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except av.FFmpegError as exc:
        raise MediaError("unsupported_media", f"{name}: not a readable video file ({_reason(exc)})") from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: InputContainer, name: str) -> VideoStream:
    """The module's rule: of the video streams that are no cover picture, the default ones if the
    container marks any, else all; of these the largest, the first on a tie."""
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not videos:
        kinds = sorted({str(s.type) for s in container.streams if s.type != "video"})
        kinds += ["a cover picture"] if container.streams.video else []
        raise MediaError(
            "no_video_stream", f"{name}: no video stream (streams: {', '.join(kinds or ['none'])})"
        )
    decodable = [s for s in videos if s.codec_context is not None]
    if not decodable:
        raise MediaError("unsupported_media", f"{name}: no decoder for its video codec")
    candidates = [s for s in decodable if s.disposition & Disposition.default] or decodable
    return max(candidates, key=lambda s: s.codec_context.width * s.codec_context.height)


def _refuse_still_image(container: InputContainer, path: str | Path, name: str) -> None:
    """FFmpeg reads a PNG or JPEG as a one-frame video, and an MPO (a JPEG followed by more
    pictures, as cameras write) as a Motion JPEG video; a job is for videos (docs/security.md)."""
    demuxer = container.format.name
    if demuxer == "mjpeg" and _is_mpo(path):
        demuxer = "mpo"
    if demuxer in ("image2", "mpo") or demuxer.endswith("_pipe"):
        kind = demuxer.removesuffix("_pipe").upper()
        raise MediaError(
            "unsupported_media",
            f"{name}: a still image ({kind}), not a video; send single images as frames on "
            "the WebSocket /v1/stream, or a 1-frame video",
        )


def _is_mpo(path: str | Path) -> bool:
    """Whether the file is an MPO, from its header (Pillow reads no pixels until asked)."""
    try:
        with Image.open(path) as image:
            return image.format == "MPO"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def _declared_frames(stream: VideoStream) -> int:
    """Frames the header declares (0: none); an MP4's index after its edit list can hold fewer,
    when the edit list hides leading frames that no later frame needs."""
    indexed = len(stream.index_entries)
    return min(stream.frames, indexed) if stream.frames and indexed else stream.frames


def _count_packets(container: InputContainer, stream: VideoStream, name: str) -> int:
    try:
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.FFmpegError as exc:
        raise MediaError("corrupt", f"{name}: video data is damaged ({_reason(exc)})") from exc


@dataclass
class _Reading:
    """One pass over a stream: packets demuxed, frames decoded, frames the decoder refused."""

    packets: int = 0
    frames: int = 0
    corrupt: int = 0


def _decode(
    container: InputContainer,
    stream: VideoStream,
    name: str,
    limits: VideoLimits,
    reading: _Reading,
) -> Generator[av.VideoFrame, None, None]:
    """The stream's frames in presentation order from a bounded decoder (module docstring); a
    packet the decoder refuses is counted in ``reading`` and skipped, up to ``max_corrupt_frames``."""
    max_pixels, max_corrupt_frames = limits.get("max_pixels"), limits.get("max_corrupt_frames", 0)
    context = stream.codec_context
    context.thread_type, context.thread_count = "AUTO", DECODER_THREADS
    if max_pixels is not None:
        context.options = {"max_pixels": str(max_pixels)}
    try:
        for packet in container.demux(stream):
            if packet.size:
                if reading.packets == 0 or packet.is_keyframe:  # where a stream can change its size
                    _check_coded_size(stream, packet, name, max_pixels)
                reading.packets += 1
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                # a frame above max_pixels is refused as "invalid data": the decoder's size tells
                if max_pixels is not None and context.width * context.height > max_pixels:
                    raise _too_large(name, context.width, context.height, max_pixels) from exc
                reading.corrupt += 1
                if reading.corrupt > max_corrupt_frames:
                    raise MediaError(
                        "corrupt",
                        f"{name}: video data is damaged after frame {reading.frames} ({_reason(exc)}; "
                        f"{reading.corrupt} frames did not decode, more than the limit of "
                        f"{max_corrupt_frames})",
                    ) from exc
                continue
            for frame in frames:
                reading.frames += 1
                yield frame
    except av.FFmpegError as exc:  # the demuxer: nothing after this point can be read
        raise MediaError(
            "corrupt", f"{name}: video data is damaged after frame {reading.frames} ({_reason(exc)})"
        ) from exc


def _check_coded_size(stream: VideoStream, packet: av.Packet, name: str, max_pixels: int | None) -> None:
    """The size the codec's own headers in ``packet`` (or the stream's extradata) give, from a fresh
    parser (one that has seen a size keeps it), before the decoder allocates anything."""
    if max_pixels is None:
        return
    parser = av.CodecContext.create(stream.codec_context.name, "r")
    assert isinstance(parser, VideoCodecContext)  # a video stream's codec
    parser.extradata = stream.codec_context.extradata
    try:
        parser.parse(memoryview(packet))
        parser.parse(None)  # flushed: a parser otherwise waits for the next packet's start
    except (ValueError, av.FFmpegError):  # no parser for this codec, or it stumbled: the decoder decides
        return
    _check_size(name, parser.width, parser.height, max_pixels)


def _rotation(frame: av.VideoFrame) -> int:
    """Degrees clockwise that make the frame upright, from its display matrix (whose angle PyAV
    gives counter-clockwise), to the nearest quarter turn."""
    return round(-frame.rotation / 90) % 4 * 90


def _upright(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    rotation = _rotation(frame)
    return np.ascontiguousarray(np.rot90(image, -rotation // 90)) if rotation else image


def _describe(
    container: InputContainer, stream: VideoStream, num_frames: int, first: av.VideoFrame | None = None
) -> VideoInfo:
    """The stream as its headers say, or as its ``first`` frame shows when given (size, rotation)."""
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
    width, height = (
        (first.width, first.height) if first else (stream.codec_context.width, stream.codec_context.height)
    )
    rotation = _rotation(first) if first else 0
    return VideoInfo(
        width=height if rotation % 180 else width,
        height=width if rotation % 180 else height,
        fps=Fraction(fps or 0),
        time_base=Fraction(time_base),
        num_frames=num_frames,
        duration=duration,
        codec=stream.codec_context.name,
        container=container.format.name,
        stream=stream.index,
        rotation=rotation,
    )


def _check_limits(info: VideoInfo, name: str, limits: VideoLimits) -> None:
    max_pixels, max_frames = limits.get("max_pixels"), limits.get("max_frames")
    max_seconds = limits.get("max_seconds")
    if max_pixels is not None:
        _check_size(name, info.width, info.height, max_pixels)
    if max_seconds is not None and info.duration > max_seconds:
        raise _too_long(name, info.duration, max_seconds)
    if max_frames is not None and info.num_frames > max_frames:
        raise _too_many(name, max_frames)


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise _too_large(name, width, height, max_pixels)


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
