"""Decoding live frames: real JPEG/PNG/WebP bytes in, RGB out, clear errors for bad messages."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tdmi.service.images import decode_image
from tdmi.service.media import MediaError


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
