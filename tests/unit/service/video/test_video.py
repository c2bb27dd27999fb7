"""Video decoding and the overlay writer, on small videos PyAV writes at test time."""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tdmi.service.media import MediaError
from tdmi.service.video import DecodedFrame, OverlayWriter, VideoFrames, iter_frames, probe_video
from tests.helpers.media import claim_size, encode_video, mpo, picture, video_streams, with_junk_frames

TB_90K = Fraction(1, 90000)
# 25 fps with one 1.5x gap: variable timing on a 1/90000 clock
VFR_PTS = [0, 3600, 7200, 10800, 16200, 19800, 23400, 27000]
WIDTH, HEIGHT = 64, 48


def _frame_image(i: int, noise: np.random.Generator | None = None) -> np.ndarray:
    """Frame ``i`` < 10 has brightness 20 i + 20 (so order can be read back), or is pure noise."""
    if noise is not None:
        return noise.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image = np.full((HEIGHT, WIDTH, 3), 20 + 20 * i % 200, np.uint8)
    image[: HEIGHT // 2, : WIDTH // 2] = 255 - image[0, 0]  # some structure for the encoder
    return image


def write_video(
    target: Path | io.RawIOBase,
    pts: list[int] = VFR_PTS,
    time_base: Fraction = TB_90K,
    codec: str = "libx264",
    container_format: str | None = None,
    noise: bool = False,
    options: dict[str, str] | None = None,
) -> None:
    rng = np.random.default_rng(0) if noise else None
    file = target if isinstance(target, io.RawIOBase) else str(target)
    with av.open(file, "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        for i, frame_pts in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, rng), format="rgb24")
            frame.pts, frame.time_base = frame_pts, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture
def vfr_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "vfr.mp4"
    write_video(path)
    return path


def _media_error(fn: Callable[..., object], *args: object, **kwargs: object) -> MediaError:
    with pytest.raises(MediaError) as caught:
        fn(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return caught.value


def _decode_all(path: Path, **limits: Any) -> list[DecodedFrame]:
    return list(iter_frames(path, **limits))


# -- probing and decoding ---------------------------------------------------------------------


def test_probe_describes_the_video_stream(vfr_mp4: Path) -> None:
    info = probe_video(vfr_mp4)
    assert (info.width, info.height, info.codec) == (WIDTH, HEIGHT, "h264")
    assert info.time_base == TB_90K
    assert info.num_frames == len(VFR_PTS)
    # the last frame lasts as long as the one before it: 27000 + 3600 ticks in all
    assert info.duration == pytest.approx(30600 / 90000)
    assert info.fps == Fraction(len(VFR_PTS) * 90000, 30600)


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".mp4", "libx264"), (".mkv", "libx264"), (".webm", "libvpx-vp9")]
)
def test_frames_keep_source_timestamps_in_presentation_order(tmp_path: Path, suffix: str, codec: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_video(path, codec=codec)
    frames = list(iter_frames(path))
    info = probe_video(path)  # Matroska has no frame count in its header: counted by demuxing

    assert info.num_frames == len(frames) == len(VFR_PTS)
    assert [f.index for f in frames] == list(range(len(VFR_PTS)))
    assert [f.seconds for f in frames] == pytest.approx([p / 90000 for p in VFR_PTS], abs=1e-3)
    assert all(f.pts * f.time_base == pytest.approx(f.seconds) for f in frames)
    assert all(f.image.shape == (HEIGHT, WIDTH, 3) and f.image.dtype == np.uint8 for f in frames)
    # libx264 reorders frames (B-frames); the brightness ramp proves presentation order
    brightness = [float(f.image[HEIGHT // 2 :, WIDTH // 2 :].mean()) for f in frames]
    assert brightness == pytest.approx([20 * i + 20 for i in range(len(frames))], abs=3)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "absent.mp4")


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 50, bytes(range(256)) * 20])
def test_junk_is_unsupported_media(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    for fn in (probe_video, _decode_all):
        error = _media_error(fn, path)
        assert error.kind == "unsupported_media" and error.http_status == 415
        assert "upload.mp4" in str(error)


def test_errors_call_an_upload_by_the_users_file_name(tmp_path: Path, vfr_mp4: Path) -> None:
    """Uploads are stored under a job id; the user knows the file as the name they sent."""
    junk = tmp_path / "0123456789abcdef.upload"
    junk.write_bytes(b"this is not a video" * 50)
    for fn in (probe_video, _decode_all):
        message = str(_media_error(fn, junk, name="holiday.mp4"))
        assert message.startswith("holiday.mp4: ") and "0123456789abcdef" not in message
    big = str(_media_error(_decode_all, vfr_mp4, max_pixels=10, name="holiday.mp4"))
    assert big.startswith("holiday.mp4: frames of") and vfr_mp4.name not in big


def test_mp4_cut_before_its_index_cannot_be_opened(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    write_video(whole, noise=True)  # index (moov) at the end, as most encoders write it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert _media_error(probe_video, cut).kind == "unsupported_media"


def test_mp4_cut_in_half_stops_with_the_frame_reached(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    write_video(whole, noise=True, options={"movflags": "+faststart"})  # index first: still opens
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    decoded: list[DecodedFrame] = []
    with pytest.raises(MediaError) as caught:
        decoded.extend(iter_frames(cut))
    assert caught.value.kind == "corrupt" and caught.value.http_status == 422
    assert f"after frame {len(decoded)}" in str(caught.value)
    assert 0 < len(decoded) < len(VFR_PTS)


def test_mp4_cut_between_packets_is_caught_by_the_frame_count(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    write_video(whole, noise=True, options={"movflags": "+faststart"})
    with av.open(str(whole)) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: positions[5]])  # the demuxer sees a clean end of file

    error = _media_error(_decode_all, cut)
    assert error.kind == "corrupt"
    assert f"of the {len(VFR_PTS)} its header declares" in str(error)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    for fn in (probe_video, _decode_all):
        error = _media_error(fn, path)
        assert error.kind == "no_video_stream" and error.http_status == 422
        assert "audio" in str(error)


def test_video_track_without_pictures_has_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "empty.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        container.start_encoding()
        # one access-unit delimiter NAL (length-prefixed): a packet that holds no picture
        packet = av.Packet(b"\x00\x00\x00\x02\x09\xf0")
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, 0, 0, Fraction(1, 25)
        container.mux(packet)
    for fn in (probe_video, _decode_all):
        assert _media_error(fn, path).kind == "no_frames"


def test_frames_above_the_pixel_limit_are_refused(vfr_mp4: Path) -> None:
    assert probe_video(vfr_mp4, max_pixels=WIDTH * HEIGHT).width == WIDTH
    for fn in (probe_video, _decode_all):
        error = _media_error(fn, vfr_mp4, max_pixels=WIDTH * HEIGHT - 1)
        assert error.kind == "too_large" and error.http_status == 413
        assert f"{WIDTH}x{HEIGHT}" in str(error)


def test_video_above_the_duration_limit_is_refused(vfr_mp4: Path) -> None:
    assert len(_decode_all(vfr_mp4, max_seconds=0.34)) == len(VFR_PTS)
    for fn in (probe_video, _decode_all):
        error = _media_error(fn, vfr_mp4, max_seconds=0.2)
        assert error.kind == "too_long" and error.http_status == 413


class _Pipe(io.RawIOBase):
    """A write-only, unseekable sink: the muxer cannot go back to write the duration."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def test_duration_limit_holds_when_the_header_has_no_duration(tmp_path: Path) -> None:
    pipe = _Pipe()
    write_video(pipe, pts=list(range(0, 25 * 3600, 3600)), container_format="matroska")
    path = tmp_path / "streamed.mkv"
    path.write_bytes(bytes(pipe.data))

    info = probe_video(path)  # frames counted, duration derived from them
    assert info.num_frames == 25 and info.duration == pytest.approx(1.0)
    decoded: list[DecodedFrame] = []
    with pytest.raises(MediaError) as caught:
        decoded.extend(iter_frames(path, max_seconds=0.5))  # caught while decoding
    assert caught.value.kind == "too_long"
    assert [f.seconds for f in decoded] == pytest.approx([i * 0.04 for i in range(13)])  # 0.52 s is over


# -- overlay writer ---------------------------------------------------------------------------


def _copy_through_overlay(source: Path, target: Path, codec: str) -> None:
    with OverlayWriter.for_video(target, probe_video(source), codec=codec) as writer:
        for frame in iter_frames(source):
            writer.write(frame.image, frame.pts)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_overlay_has_the_source_frames_rate_and_timing(vfr_mp4: Path, tmp_path: Path, codec: str) -> None:
    overlay = tmp_path / "overlay.mp4"
    _copy_through_overlay(vfr_mp4, overlay, codec)

    source_info, overlay_info = probe_video(vfr_mp4), probe_video(overlay)
    source, result = list(iter_frames(vfr_mp4)), list(iter_frames(overlay))
    assert overlay_info.num_frames == len(result) == len(source)
    assert overlay_info.fps == source_info.fps
    assert overlay_info.duration == pytest.approx(source_info.duration, abs=float(TB_90K))
    for a, b in zip(source, result, strict=True):
        assert abs(a.seconds - b.seconds) <= float(TB_90K)
        assert np.abs(a.image.astype(int) - b.image).mean() < 4  # same pictures, lossy codec


def test_overlay_of_a_millisecond_clock_source(tmp_path: Path) -> None:
    source = tmp_path / "clip.webm"
    write_video(source, codec="libvpx-vp9")  # WebM stores time in milliseconds
    overlay = tmp_path / "overlay.mp4"
    _copy_through_overlay(source, overlay, "libx264")
    assert [f.seconds for f in iter_frames(overlay)] == pytest.approx(
        [f.seconds for f in iter_frames(source)], abs=1e-3
    )


def test_overlay_pads_odd_sizes(tmp_path: Path) -> None:
    overlay = tmp_path / "odd.mp4"
    image = np.zeros((47, 63, 3), np.uint8)
    image[:, 40:] = 200
    with OverlayWriter(overlay, 63, 47, Fraction(1, 25), Fraction(25)) as writer:
        for i in range(3):
            writer.write(image, i)
    frames = list(iter_frames(overlay))
    assert len(frames) == 3
    assert frames[0].image.shape == (48, 64, 3)
    assert np.abs(frames[0].image[:47, :63].astype(int) - image).mean() < 4
    assert frames[0].image[47, 63].mean() > 150  # the padding repeats the edge


def test_overlay_file_appears_only_when_complete(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.mp4"
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    with OverlayWriter(overlay, WIDTH, HEIGHT, TB_90K, Fraction(25)) as writer:
        writer.write(image, 0)
        assert not overlay.exists()
    assert overlay.exists()

    failed = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError), OverlayWriter(failed, WIDTH, HEIGHT, TB_90K, Fraction(25)) as writer:
        writer.write(image, 0)
        raise RuntimeError("pipeline broke")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]


def test_overlay_moves_repeated_timestamps_one_tick_later(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.mp4"
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    with OverlayWriter(overlay, WIDTH, HEIGHT, Fraction(1, 1000), Fraction(25)) as writer:
        for pts in (0, 40, 40, 120):
            writer.write(image, pts)
    assert [f.seconds for f in iter_frames(overlay)] == pytest.approx([0, 0.04, 0.041, 0.12])


def test_overlay_scales_frames_of_another_size(tmp_path: Path) -> None:
    """A source that changes its resolution midway: the overlay keeps its first size."""
    overlay = tmp_path / "o.mp4"
    with OverlayWriter(overlay, WIDTH, HEIGHT, Fraction(1, 25), Fraction(25)) as writer:
        for pts, (h, w) in enumerate([(HEIGHT, WIDTH), (1, 1), (3 * HEIGHT, 2 * WIDTH + 1), (HEIGHT, WIDTH)]):
            writer.write(np.full((h, w, 3), 200, np.uint8), pts)
    frames = list(iter_frames(overlay))
    assert len(frames) == 4
    assert {f.image.shape for f in frames} == {(HEIGHT, WIDTH, 3)}
    assert all(abs(int(f.image.mean()) - 200) <= 3 for f in frames)  # codec error stays within 3 levels


def test_overlay_refuses_wrong_frames_and_seconds_as_pts(tmp_path: Path) -> None:
    with OverlayWriter(tmp_path / "o.mp4", WIDTH, HEIGHT, TB_90K, Fraction(25)) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((HEIGHT, WIDTH, 3), np.float32), 0)
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            writer.write(np.zeros((HEIGHT, WIDTH), np.uint8), 0)
        with pytest.raises(TypeError, match="integer"):
            writer.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 0.04)  # type: ignore[arg-type]
        writer.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8), np.int64(0))  # numpy integers are fine


# -- media as people record it ----------------------------------------------------------------


def _write(tmp_path: Path, data: bytes, name: str = "clip.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("display_rotation", "clockwise", "white_corner"),
    [(-90, 90, (0, -1)), (90, 270, (-1, 0)), (180, 180, (-1, -1)), (0, 0, (0, 0))],
    ids=["phone upright", "turned left", "upside down", "plain"],
)
def test_frames_and_size_follow_the_display_matrix(
    tmp_path: Path, display_rotation: int, clockwise: int, white_corner: tuple[int, int]
) -> None:
    """The stored frames are 64x48 with a white top-left corner; the display matrix turns them."""
    path = _write(tmp_path, encode_video([picture(i) for i in range(3)], rotation=display_rotation))
    info = probe_video(path)
    assert info.rotation == clockwise
    upright = (HEIGHT, WIDTH) if clockwise % 180 == 0 else (WIDTH, HEIGHT)
    assert (info.height, info.width) == upright
    for frame in iter_frames(path):
        assert frame.image.shape == (*upright, 3) and frame.image.flags.c_contiguous
        assert frame.image[white_corner].min() > 200  # the stored top-left corner, where it is shown
        assert frame.image[upright[0] // 2, upright[1] // 2].max() < 200


@pytest.mark.parametrize(
    ("container_format", "sizes", "default", "chosen"),
    [
        ("mp4", [(160, 120), (64, 48)], 1, 1),
        ("mp4", [(64, 48), (160, 120)], 0, 0),
        ("matroska", [(64, 48), (160, 120)], None, 1),
    ],
    ids=["the default though smaller", "the default first", "none default: the largest"],
)
def test_the_video_stream_is_the_default_else_the_largest(
    tmp_path: Path,
    container_format: str,
    sizes: list[tuple[int, int]],
    default: int | None,
    chosen: int,
) -> None:
    path = _write(tmp_path, video_streams(container_format, sizes, default), "two.mkv")
    info = probe_video(path)
    assert (info.stream, info.width, info.height) == (chosen, *sizes[chosen])
    assert {f.image.shape[:2] for f in iter_frames(path)} == {sizes[chosen][::-1]}


def test_corrupt_frames_are_skipped_and_counted_up_to_the_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, with_junk_frames(12, {0, 1, 2, 7}))
    assert probe_video(path, max_corrupt_frames=3).num_frames == 12  # its first frame is found past the junk
    frames = VideoFrames(path, max_corrupt_frames=4)
    brightness = [int(f.image[-1, -1, 0]) for f in frames]
    assert frames.corrupt_frames == 4
    assert brightness == pytest.approx([20 + 15 * i for i in (3, 4, 5, 6, 8, 9, 10, 11)], abs=4)

    assert "3 frames did not decode" in str(_media_error(probe_video, path, max_corrupt_frames=2))
    over = _media_error(_decode_all, path, max_corrupt_frames=3)
    assert over.kind == "corrupt" and "4 frames did not decode, more than the limit of 3" in str(over)


def test_a_container_that_understates_the_size_is_refused_from_the_codec_header(tmp_path: Path) -> None:
    """The MP4 says 64x48; the H.264 header inside says 320x240."""
    real = encode_video([picture(i, 320, 240) for i in range(2)], codec="libx264")
    path = _write(tmp_path, claim_size(real, WIDTH, HEIGHT))
    assert probe_video(path).width == 320  # the size of the first frame, which it decodes
    for fn in (probe_video, _decode_all):
        error = _media_error(fn, path, max_pixels=WIDTH * HEIGHT * 2)
        assert error.kind == "too_large" and "320x240" in str(error)


def test_an_edit_list_that_hides_leading_frames_is_no_truncation(tmp_path: Path) -> None:
    """Key frames at -0.3 .. 0.8 s: the MP4 hides the first three, its header still counts 12."""
    video = encode_video([picture(i) for i in range(12)], pts=list(range(-3, 9)), options={"g": "1"})
    path = _write(tmp_path, video)
    assert probe_video(path).num_frames == 9
    assert [round(f.seconds, 3) for f in iter_frames(path)] == [i / 10 for i in range(9)]


def test_an_mpo_job_is_refused_as_a_still_image(tmp_path: Path) -> None:
    """FFmpeg reads an MPO (a JPEG and more pictures) as a Motion JPEG video."""
    path = _write(tmp_path, mpo(picture(0), picture(5)), "0123.upload")
    error = _media_error(probe_video, path)
    assert error.kind == "unsupported_media" and "still image (MPO)" in str(error)


def test_overlay_of_a_source_starting_before_zero_keeps_every_frame(tmp_path: Path) -> None:
    """An MP4 hides frames before time 0 behind an edit list: the overlay starts at 0 instead."""
    overlay = tmp_path / "overlay.mp4"
    with OverlayWriter(overlay, WIDTH, HEIGHT, TB_90K, Fraction(10)) as writer:
        for i in range(12):
            writer.write(picture(i), (i - 3) * 9000)
    frames = list(iter_frames(overlay))
    assert [f.seconds for f in frames] == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    assert [int(f.image[-1, -1, 0]) for f in frames] == pytest.approx([20 + 15 * i for i in range(12)], abs=4)
