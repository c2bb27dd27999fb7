"""Multipart uploads streamed straight to a file: never held in memory, cut off at a size limit.

Everything else in the body is bounded too, as it arrives: the bytes of all form fields together,
the parts themselves (only the fields the route reads, each once) and each part's headers (8
lines of ``MAX_PART_HEADER_BYTES``: a longer one is a 422 that says so). The file name is kept
cut to ``MAX_NAME_CHARS`` and escaped: it is shown in answers and logs (``client_text``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from tdmi.service.client_text import shown
from tdmi.service.errors import ApiError
from tdmi.service.faults import is_transient

__all__ = ["Upload", "receive_upload"]

log = logging.getLogger("tdmi.uploads")

MAX_FIELD_BYTES = 1024 * 1024  # all form fields together (boxes JSON included) are small
MAX_PART_HEADER_BYTES = 16384  # a header line of a part: a file name of 5,000 characters fits
MAX_PART_HEADERS = 8
MAX_NAME_CHARS = 255  # of the file name kept (a file system's longest)


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


class _Collector:
    """Callbacks of python-multipart's parser: the file part goes to disk, fields to memory."""

    def __init__(self, dest: Path, file_field: str, max_bytes: int, names: tuple[str, ...]):
        self.dest, self.file_field, self.max_bytes, self.names = dest, file_field, max_bytes, names
        self.upload = Upload()
        self._field_bytes = 0  # of every form field so far
        self._header_name = bytearray()
        self._headers: dict[bytes, bytearray] = {}
        self._name: str | None = None
        self._value = bytearray()
        self._file: BinaryIO | None = None

    def on_part_begin(self) -> None:
        self._headers, self._name, self._value = {}, None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._headers.setdefault(bytes(self._header_name.lower()), bytearray()).extend(data[start:end])

    def on_header_end(self) -> None:
        self._header_name = bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(bytes(self._headers.get(b"content-disposition", b"")))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name not in self.names:
            known = ", ".join(self.names)
            detail = f"unknown form field {shown(self._name, 40)!r}; the fields are {known}"
            raise ApiError(422, "invalid_request", detail)
        if self._name in self.upload.fields:
            raise ApiError(422, "invalid_request", f"form field {self._name!r} given twice")
        if self._name == self.file_field:
            if self._file is not None:
                raise ApiError(422, "invalid_request", f"more than one {self.file_field!r} part")
            filename = options.get(b"filename")
            name = filename.decode("utf-8", "replace") if filename else None
            self.upload.filename = shown(name, MAX_NAME_CHARS) if name else None
            log.info("receiving %s into %s", name, self.dest.name)  # the log escapes and cuts it
            self._file = self.dest.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._name == self.file_field and self._file is not None:
            self.upload.size += len(chunk)
            if self.upload.size > self.max_bytes:
                raise ApiError(413, "too_large", f"upload exceeds the limit of {self.max_bytes} bytes")
            self._file.write(chunk)
        else:
            self._value += chunk
            self._field_bytes += len(chunk)
            if self._field_bytes > MAX_FIELD_BYTES:
                raise ApiError(413, "too_large", f"the form fields exceed {MAX_FIELD_BYTES} bytes in all")

    def on_part_end(self) -> None:
        if self._name == self.file_field and self._file is not None:
            self._file.close()
        elif self._name:
            self.upload.fields[self._name] = self._value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


async def receive_upload(
    request: Request, dest: Path, file_field: str, max_bytes: int, names: tuple[str, ...]
) -> Upload:
    """Parse a ``multipart/form-data`` body, writing part ``file_field`` to ``dest``; parts other
    than ``names`` are refused."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise ApiError(415, "unsupported_media", "send the video as multipart/form-data with a 'file' part")
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes + MAX_FIELD_BYTES:
        raise ApiError(413, "too_large", f"upload of {declared} bytes exceeds the limit of {max_bytes} bytes")
    dest.parent.mkdir(parents=True, exist_ok=True)
    collector = _Collector(dest, file_field, max_bytes, names)
    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_part_begin": collector.on_part_begin,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
        },
        max_header_count=MAX_PART_HEADERS,
        max_header_size=MAX_PART_HEADER_BYTES,
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        collector.close()
    except Exception as exc:
        with contextlib.suppress(OSError):
            collector.close()
        dest.unlink(missing_ok=True)
        if isinstance(exc, ApiError):
            raise
        if is_transient(exc):  # a full disk, no descriptors: 507/503 (errors.py); the partial upload is gone
            raise
        if isinstance(exc, MultipartParseError) and str(exc).startswith("Maximum header"):
            detail = (
                f"a part's headers exceed {MAX_PART_HEADERS} lines of {MAX_PART_HEADER_BYTES} bytes "
                "(is the file name that long?)"
            )
            raise ApiError(422, "invalid_request", detail) from None
        raise ApiError(400, "invalid_request", "malformed multipart/form-data body") from exc
    if collector.upload.filename is None and not dest.exists():
        raise ApiError(422, "invalid_request", f"no {file_field!r} part with the video")
    return collector.upload
