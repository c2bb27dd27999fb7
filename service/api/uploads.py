"""Multipart uploads streamed straight to a file: never held in memory, cut off at a size limit.

Everything else in the body is bounded too, as it arrives: the bytes of all form fields together
and the parts themselves (only the fields the route reads, each once); python-multipart bounds
each part's headers (8 lines of 4224 bytes), and a body beyond that is malformed (400).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from tdmi.service.errors import ApiError
from tdmi.service.jobs.disk import insufficient_storage, is_disk_full

__all__ = ["Upload", "receive_upload"]

MAX_FIELD_BYTES = 1024 * 1024  # all form fields together (boxes JSON included) are small


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
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._value = bytearray()
        self._file: BinaryIO | None = None

    def on_part_begin(self) -> None:
        self._headers, self._name, self._value = {}, None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._header_name.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]

    def on_header_end(self) -> None:
        self._header_name = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name not in self.names:
            shown = self._name if len(self._name) <= 40 else self._name[:40] + "..."
            known = ", ".join(self.names)
            raise ApiError(422, "invalid_request", f"unknown form field {shown!r}; the fields are {known}")
        if self._name in self.upload.fields:
            raise ApiError(422, "invalid_request", f"form field {self._name!r} given twice")
        if self._name == self.file_field:
            if self._file is not None:
                raise ApiError(422, "invalid_request", f"more than one {self.file_field!r} part")
            filename = options.get(b"filename")
            self.upload.filename = filename.decode("utf-8", "replace") if filename else None
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
        if is_disk_full(exc):  # nothing else is lost: the partial upload is gone
            raise insufficient_storage() from None
        raise ApiError(400, "invalid_request", "malformed multipart/form-data body") from exc
    if collector.upload.filename is None and not dest.exists():
        raise ApiError(422, "invalid_request", f"no {file_field!r} part with the video")
    return collector.upload
