"""A weights mirror on loopback: a real HTTP server (http.server in a thread) that serves bytes
with Range support, can cut a response short once or hold it half-sent until released, and
records what it was asked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Mirror", "serve_mirror"]


@dataclass
class Mirror:
    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before a cut (once)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    hold: dict[str, threading.Event] = field(default_factory=dict)  # path -> half sent until set (once)


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            mirror.requests.append((self.path, self.headers.get("Range")))
            data = mirror.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes=") : -1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            hold = mirror.hold.pop(self.path, None)
            if hold is not None:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                hold.wait(60)
                body = body[len(body) // 2 :]
            cut = mirror.cut_after.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])
            if cut is not None:
                self.close_connection = True

    return Handler


@contextmanager
def serve_mirror() -> Iterator[Mirror]:
    mirror = Mirror()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(mirror))
    mirror.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
