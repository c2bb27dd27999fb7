"""Reading an MJPEG answer (``multipart/x-mixed-replace``) as a browser's ``<img>`` does."""

from __future__ import annotations

import httpx

__all__ = ["mjpeg_parts"]


def mjpeg_parts(url: str, count: int, timeout: float = 60, **params: str) -> list[tuple[bytes, bytes]]:
    """The first ``count`` whole parts of the endless answer at ``url``, as (head, body); the
    connection is closed after them. Fails unless the answer is 200 multipart/x-mixed-replace."""
    with httpx.stream("GET", url, params=params, timeout=timeout) as reply:
        assert reply.status_code == 200, reply.read()
        kind = reply.headers["content-type"]
        assert kind.startswith("multipart/x-mixed-replace; boundary="), kind
        separator = b"--" + kind.split("boundary=")[1].encode()
        data = b""
        for chunk in reply.iter_bytes():
            data += chunk
            if data.count(separator) > count:  # the part after the last one wanted has begun
                break
    parts = [p for p in data.split(separator) if p.strip()][:count]
    return [(head, body.removesuffix(b"\r\n")) for head, _, body in (p.partition(b"\r\n\r\n") for p in parts)]
