"""Decoding live frames: real JPEG/PNG/WebP bytes in, RGB out, clear errors for bad messages."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from tdmi.service.images import decode_image
from tdmi.service.media import MediaError
from tests.helpers.media import jpeg_cut_short, jpeg_without_scan_data, mpo


def _picture(height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth RGB gradients: lossy codecs keep them close, and the channels differ."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60)], axis=-1).astype(np.uint8)


def _encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(("image_format", "tolerance"), [("JPEG", 4.0), ("PNG", 0.0), ("WEBP", 4.0)])
def test_decodes_to_rgb(image_format: str, tolerance: float) -> None:
    rgb = _picture()
    decoded = decode_image(_encode(Image.fromarray(rgb), image_format, quality=95))
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - rgb).mean() <= tolerance  # RGB order, not OpenCV's BGR


def test_png_alpha_is_dropped() -> None:
    rgba = np.dstack([_picture(), np.full((48, 64), 7, np.uint8)])
    decoded = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded, rgba[..., :3])


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = _picture()[..., 0]
    decoded = decode_image(_encode(Image.fromarray(gray, "L"), "PNG"))
    assert decoded.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_truncated_jpeg_is_corrupt() -> None:
    data = _encode(Image.fromarray(_picture(240, 320)), "JPEG", quality=90)
    with pytest.raises(MediaError) as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.kind == "corrupt" and caught.value.http_status == 422
    assert "JPEG" in str(caught.value)


@pytest.mark.parametrize("data", [b"\x00" * 100, bytes(range(256)) * 4, b"GIF8 not really", b""])
def test_random_bytes_are_unsupported(data: bytes) -> None:
    with pytest.raises(MediaError) as caught:
        decode_image(data)
    assert caught.value.kind == "unsupported_media" and caught.value.http_status == 415


def test_formats_outside_the_list_are_refused_by_name() -> None:
    with pytest.raises(MediaError, match="unsupported image format GIF") as caught:
        decode_image(_encode(Image.fromarray(_picture()), "GIF"))
    assert caught.value.kind == "unsupported_media"


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size and holds no pixels: signature, IHDR, IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("max_pixels", [None, 10**12])
def test_decompression_bombs_are_refused_even_without_a_limit(max_pixels: int | None) -> None:
    with pytest.raises(MediaError) as caught:
        decode_image(_png_header(20000, 20000), max_pixels=max_pixels)
    assert caught.value.kind == "too_large"


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = _encode(Image.fromarray(_picture()), "PNG")
    assert decode_image(data, max_pixels=64 * 48).shape == (48, 64, 3)
    with pytest.raises(MediaError, match="64x48") as caught:
        decode_image(data, max_pixels=64 * 48 - 1)
    assert caught.value.kind == "too_large" and caught.value.http_status == 413
    # the size is refused before decoding: a header without pixel data reports size, not damage
    with pytest.raises(MediaError, match="5000x5000 exceeds the limit of 8294400") as caught:
        decode_image(_png_header(5000, 5000))  # default limit: 3840x2160
    assert caught.value.kind == "too_large"


# -- stills as people make them ---------------------------------------------------------------


def test_mpo_is_read_as_its_first_picture() -> None:
    first, second = _picture(), 255 - _picture()
    data = mpo(first, second)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "MPO" and image.n_frames == 2
        expected = np.asarray(image.convert("RGB"))  # Pillow's first picture
    decoded = decode_image(data)
    assert np.abs(decoded.astype(int) - expected).mean() < 1
    assert np.abs(decoded.astype(int) - second).mean() > 50


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize(
    "damage", [jpeg_without_scan_data, jpeg_cut_short], ids=["no scan data", "cut short"]
)
def test_a_jpeg_that_does_not_fully_decode_is_corrupt(
    progressive: bool, damage: Callable[..., bytes]
) -> None:
    """libjpeg decodes both to a picture, grey where data is missing, and only warns."""
    with pytest.raises(MediaError, match="truncated or damaged") as caught:
        decode_image(damage(_picture(240, 320), progressive=progressive))
    assert caught.value.kind == "corrupt"


def _exif_rotated(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(image, "JPEG", exif=exif)


@pytest.mark.parametrize(
    "make",
    [
        lambda grey: _encode(Image.fromarray(grey), "JPEG"),
        lambda grey: _encode(Image.fromarray(grey), "JPEG", progressive=True),
        lambda grey: _encode(Image.fromarray(grey[..., 0]), "JPEG"),
        lambda grey: _exif_rotated(Image.fromarray(grey), 6),
    ],
    ids=["baseline", "progressive", "grayscale", "EXIF turned"],
)
def test_whole_jpegs_with_mid_grey_corners_are_served(make: Callable[[np.ndarray], bytes]) -> None:
    """A mid-grey corner is what a fill leaves: such JPEGs are checked once more, and pass."""
    grey = np.full((48, 64, 3), 128, np.uint8)
    grey[12:36, 16:48] = 30
    decoded = decode_image(make(grey))
    assert decoded[0, 0].tolist() == [128, 128, 128]
    assert sorted(decoded.shape[:2]) == [48, 64]
