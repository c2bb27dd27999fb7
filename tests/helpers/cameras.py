"""Real cameras on loopback for tests: an RTSP one (GStreamer's RTSP server, tests/helpers/rtsp_server.py)
and an MJPEG-over-HTTP one (``multipart/x-mixed-replace``, what cheap IP cameras serve).

Both serve the pedestrians clip, looped, at a set frame rate. ``RtspCamera`` runs in a process of
its own, so a test can kill it (a camera unplugged) and start it again on the same port.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import quote

import av
import cv2

from tests.helpers.server import free_port

__all__ = ["CLIP", "MjpegCamera", "RtspCamera", "answers_rtsp", "connections_to"]

CLIP = Path(__file__).resolve().parents[1] / "data" / "pedestrians" / "vtest_cut.mp4"
SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's python3-gi lives
PACKAGES = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-{base,good,ugly} gstreamer1.0-libav"


def answers_rtsp(port: int, timeout: float = 1.0) -> bool:
    """Whether an RTSP server answers OPTIONS on the loopback ``port``."""
    request = f"OPTIONS rtsp://127.0.0.1:{port}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(request)
            return connection.recv(64).startswith(b"RTSP/1.0 ")
    except OSError:
        return False


def connections_to(port: int) -> int:
    """TCP connections of this process to the loopback ``port`` (its sockets in /proc/net/tcp*)."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed meanwhile
            link = os.readlink(fd)
            if link.startswith("socket:["):
                ours.add(link[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port, inode = int(fields[2].rsplit(":", 1)[1], 16), fields[9]
            count += remote_port == port and inode in ours
    return count


def rtsp_server_available() -> bool:
    """Whether the system Python can import GStreamer's RTSP server."""
    if not Path(SYSTEM_PYTHON).exists():
        return False
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True).returncode == 0


class RtspCamera:
    """``rtsp://127.0.0.1:PORT/cam``: H.264 at ``fps``, optionally behind Basic authentication."""

    def __init__(self, fps: int = 10, user: str | None = None, password: str | None = None):
        if not rtsp_server_available():
            raise RuntimeError(f"GStreamer's RTSP server is not installed (apt-get install {PACKAGES})")
        self.fps, self.user, self.password = fps, user, password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """With the credentials percent-encoded, as a URL holds them."""
        if not self.user:
            return f"rtsp://127.0.0.1:{self.port}/cam"
        user, password = quote(self.user, safe=""), quote(self.password or "", safe="")
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 30) -> None:
        """Start serving on this camera's port (the same one after a ``kill``) and wait until it answers."""
        command = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port), "--clip", str(CLIP)]
        command += ["--fps", str(self.fps)]
        if self.user:
            command += ["--user", self.user, "--password", self.password or ""]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not answers_rtsp(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the RTSP server ended: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the RTSP server did not answer on port {self.port} within {timeout} s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the camera is gone at once, its connections cut without a goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the camera hangs with its connections open (a frozen camera, a dead link)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.kill()


def clip_jpegs() -> list[bytes]:
    """The clip's frames as JPEG files."""
    with av.open(str(CLIP)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]


class MjpegCamera:
    """``http://127.0.0.1:PORT/video``: the clip's frames as JPEG parts of one endless
    ``multipart/x-mixed-replace`` answer, ``fps`` a second, to every client."""

    BOUNDARY = "frame"

    def __init__(self, fps: float = 10, jpegs: list[bytes] | None = None):
        self.fps = fps
        self.jpegs = jpegs or clip_jpegs()
        self.stopping = threading.Event()
        self.requests = 0  # GET requests answered
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.requests += 1
                if self.path.split("?")[0] != "/video":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={camera.BOUNDARY}")
                self.end_headers()
                with contextlib.suppress(OSError):  # the client went away
                    camera.stream_to(self.wfile)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="mjpeg-camera", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/video"

    def stream_to(self, out: BinaryIO) -> None:
        """Writes parts until the camera stops or the write fails (the client left)."""
        count = 0
        while not self.stopping.is_set():
            jpeg = self.jpegs[count % len(self.jpegs)]
            head = f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            out.write(head.encode() + jpeg + b"\r\n")
            out.flush()
            count += 1
            self.stopping.wait(1 / self.fps)

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
