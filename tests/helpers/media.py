"""Media files made in memory for tests: videos with PyAV (rotated, with junk frames, several
streams, a container header that understates the size, a size that changes midway, no picture,
no video at all), and still images with their quirks (MPO, JPEGs that do not fully decode)."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from fractions import Fraction

import av
import cv2
import numpy as np
from av.stream import Disposition
from PIL import Image

__all__ = [
    "audio_only",
    "claim_size",
    "display_matrix",
    "encode_video",
    "jpeg",
    "jpeg_cut_short",
    "jpeg_without_scan_data",
    "mpo",
    "no_pictures",
    "picture",
    "png",
    "size_switch",
    "video_streams",
    "with_junk_frames",
]


def picture(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frame ``i``: a brightness that tells frames apart, and a corner that tells orientation."""
    image = np.full((height, width, 3), 20 + 15 * i % 220, np.uint8)
    image[: height // 4, : width // 4] = 255
    return image


def encode_video(
    frames: list[np.ndarray],
    *,
    container_format: str = "mp4",
    codec: str = "mpeg4",
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 10),
    options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
) -> bytes:
    """One video stream of ``frames`` (RGB), at 10 fps unless ``pts`` says otherwise;
    ``rotation`` sets the display matrix (counter-clockwise degrees, as PyAV reads it back)."""
    height, width = frames[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        stream.codec_context.options = options or {}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = (pts[i] if pts else i), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def with_junk_frames(count: int, junk: set[int]) -> bytes:
    """An MPEG-4 MP4 of ``count`` key frames (each decodes alone) whose frames in ``junk`` hold
    random bytes instead of their picture."""
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 1
        written = 0
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
            frame.pts = i
            packets = stream.encode(frame) if i < count - 1 else stream.encode(frame) + stream.encode(None)
            for packet in packets:
                if written in junk:
                    damaged = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                    damaged.pts, damaged.dts, damaged.time_base = packet.pts, packet.dts, packet.time_base
                    damaged.stream, damaged.is_keyframe = stream, True
                    packet = damaged
                container.mux(packet)
                written += 1
    return buffer.getvalue()


def _mp4_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, size, type) of the MP4 boxes in data[start:end] (32-bit sizes: these files are small)."""
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        yield start, size, kind
        start += size


def claim_size(mp4: bytes, width: int, height: int) -> bytes:
    """The MP4 with its container header (the track header and the sample entry) claiming
    ``width`` x ``height``; the codec's own header inside still says the truth."""
    data = bytearray(mp4)
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}

    def walk(start: int, end: int) -> None:
        for offset, size, kind in _mp4_boxes(bytes(data), start, end):
            if kind in containers:
                walk(offset + 8, offset + size)
            elif kind == b"tkhd":  # version 0: 84 bytes; width and height last, 16.16 fixed point
                data[offset + 84 : offset + 92] = struct.pack(">II", width << 16, height << 16)
            elif kind == b"stsd":  # the first sample entry: width and height 32 bytes into its body
                entry = offset + 16
                data[entry + 32 : entry + 36] = struct.pack(">HH", width, height)

    walk(0, len(data))
    return bytes(data)


def display_matrix(mp4: bytes) -> tuple[float, ...]:
    """The video track header's matrix (a, b, c, d of the 3x3), as the MP4 stores it."""
    offset = mp4.index(b"tkhd") - 4
    matrix = struct.unpack(">9i", mp4[offset + 48 : offset + 84])
    return tuple(v / 65536 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))


def jpeg(image: np.ndarray, progressive: bool = False) -> bytes:
    """An RGB picture as a JPEG, baseline or progressive."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()


def mpo(first: np.ndarray, second: np.ndarray) -> bytes:
    """What cameras and phones write: a JPEG followed by more pictures (here two), with an index."""
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "MPO", save_all=True, append_images=[Image.fromarray(second)])
    return buffer.getvalue()


def jpeg_without_scan_data(image: np.ndarray, progressive: bool = False) -> bytes:
    """A JPEG's header, its (first) scan's header, and straight its end: no picture data."""
    data = jpeg(image, progressive)
    scan = data.index(b"\xff\xda")
    header_length = struct.unpack(">H", data[scan + 2 : scan + 4])[0]
    return data[: scan + 2 + header_length] + b"\xff\xd9"


def jpeg_cut_short(image: np.ndarray, progressive: bool = False) -> bytes:
    """A JPEG whose data stops a third of the way, closed by an end-of-image marker."""
    data = jpeg(image, progressive)
    return data[: len(data) // 3] + b"\xff\xd9"


def video_streams(container_format: str, sizes: list[tuple[int, int]], default: int | None) -> bytes:
    """Video streams of the given sizes, stream ``default`` alone marked default (None: none)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        streams = []
        for index, (width, height) in enumerate(sizes):
            stream = container.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.disposition = Disposition.default if index == default else Disposition(0)
            streams.append(stream)
        for i in range(4):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(picture(i, stream.width, stream.height), format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
        for stream in streams:
            container.mux(stream.encode(None))
    return buffer.getvalue()


def audio_only() -> bytes:
    """An MP4 with an AAC track and no video."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def no_pictures() -> bytes:
    """A Matroska file with a video track whose only packet holds no picture."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        packet = av.Packet(b"\x00\x00\x00\x02\x09\xf0")  # one access-unit delimiter NAL
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, 0, 0, Fraction(1, 25)
        container.mux(packet)
    return buffer.getvalue()


def _mpegts(width: int, height: int, frames: int, start: int = 0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 120, np.uint8), format="rgb24")
            frame.pts = start + i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def size_switch(first: tuple[int, int], then: tuple[int, int], frames: int = 3) -> bytes:
    """An MPEG-TS stream whose resolution changes midway (two streams back to back, as a broadcast)."""
    return _mpegts(*first, frames) + _mpegts(*then, frames, start=frames)


def png(width: int = 64, height: int = 48) -> bytes:
    """A black still image as a PNG."""
    return cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))[1].tobytes()
