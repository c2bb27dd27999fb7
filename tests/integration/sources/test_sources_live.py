"""Camera sources on a real server pulling a real RTSP camera (GStreamer's RTSP server on
loopback, tests/helpers/cameras.py): live poses to two viewers, the MJPEG overlay, and a DELETE
that leaves no thread and no connection behind. The routes' answers are tested in-process
(tests/integration/http_layer/test_sources_routes.py)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.helpers.cameras import RtspCamera
from tests.helpers.mjpeg import mjpeg_parts
from tests.helpers.server import ServerFactory, ServerProcess, free_port
from tests.helpers.shared_fixtures import SERVER_ENV
from tests.helpers.waits import until

pytestmark = pytest.mark.slow  # a server of its own and a real camera: tens of seconds

# the camera listens on loopback, which sources may not reach by default
SOURCES_ENV = {**SERVER_ENV, "TDMI_SOURCE_ALLOWED_NETWORKS": "127.0.0.1/32"}


@pytest.fixture(scope="module")
def sources_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory.get(env=SOURCES_ENV)


@pytest.fixture
def camera() -> Iterator[RtspCamera]:
    with RtspCamera(fps=10) as camera:
        yield camera


def _add(server: ServerProcess, url: str) -> dict[str, Any]:
    reply = httpx.post(f"{server.base}/v1/sources", json={"url": url, "lookahead": 1}, timeout=30)
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    return created


def _info(server: ServerProcess, source_id: str) -> dict[str, Any]:
    info: dict[str, Any] = httpx.get(f"{server.base}/v1/sources/{source_id}", timeout=10).json()
    return info


def _delete(server: ServerProcess, source_id: str) -> None:
    assert httpx.delete(f"{server.base}/v1/sources/{source_id}", timeout=30).status_code == 200


def _watch(url: str, count: int, out: list[dict[str, Any]]) -> None:
    """``count`` results of one viewer (with whatever else came between them)."""
    with connect(url, open_timeout=30) as ws:
        while sum(m["type"] == "result" for m in out) < count:
            out.append(json.loads(ws.recv(timeout=60)))


def test_a_camera_goes_live_and_two_viewers_receive_the_same_results_in_order(
    sources_server: ServerProcess, camera: RtspCamera
) -> None:
    created = _add(sources_server, camera.url)
    source_id = created["source_id"]
    try:
        until(lambda: _info(sources_server, source_id)["status"] == "live", "the source live", timeout=60)
        views: list[list[dict[str, Any]]] = [[], []]
        viewers = [
            threading.Thread(target=_watch, args=(created["links"]["results"], 15, view)) for view in views
        ]
        for viewer in viewers:
            viewer.start()
        for viewer in viewers:
            viewer.join(timeout=120)
        assert [v[0]["type"] for v in views] == ["status", "status"]
        results = [{m["frame_id"]: m for m in view if m["type"] == "result"} for view in views]
        for by_id in results:
            ids = list(by_id)
            assert ids == sorted(ids) and len(set(ids)) == len(ids)  # in order, once each
        shared = results[0].keys() & results[1].keys()
        assert len(shared) >= 10
        assert all(results[0][i] == results[1][i] for i in shared)
        assert any(m["persons"] for m in results[0].values())  # the clip's pedestrians
        info = _info(sources_server, source_id)
        assert info["camera_fps"] == pytest.approx(10, abs=0.5)
        assert info["frames_processed"] >= 15 and info["frames_read"] >= info["frames_processed"]
    finally:
        _delete(sources_server, source_id)


def test_the_overlay_answers_multipart_jpeg_parts(sources_server: ServerProcess, camera: RtspCamera) -> None:
    created = _add(sources_server, camera.url)
    try:
        parts = mjpeg_parts(created["links"]["overlay"], 2)
        assert len(parts) == 2
        for head, body in parts:
            assert b"image/jpeg" in head and body.startswith(b"\xff\xd8") and body.endswith(b"\xff\xd9")
    finally:
        _delete(sources_server, created["source_id"])


def _threads(pid: int) -> list[str]:
    """The OS names of the process's threads (a thread not named by us has the process's)."""
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # ended meanwhile
            names.append((task / "comm").read_text().strip())
    return names


def _connections_to(pid: int, port: int) -> int:
    """TCP sockets of ``pid`` connected to ``port`` on loopback (from /proc: no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                count += 1
    return count


def _one_source(server: ServerProcess, camera: RtspCamera) -> int:
    """Add a source, see it process frames over a connection of its own, delete it; the threads
    the server ran meanwhile."""
    pid = server.proc.pid
    source_id = _add(server, camera.url)["source_id"]
    until(lambda: _info(server, source_id)["frames_processed"] >= 3, "frames processed", timeout=60)
    assert _connections_to(pid, camera.port) >= 1
    running = len(_threads(pid))
    _delete(server, source_id)
    assert _connections_to(pid, camera.port) == 0  # closed before DELETE answered
    assert httpx.get(f"{server.base}/v1/sources/{source_id}", timeout=10).status_code == 404
    return running


def test_delete_leaves_no_thread_and_no_connection_behind(
    sources_server: ServerProcess, camera: RtspCamera
) -> None:
    """Each source's connection is closed before DELETE answers, and its threads end: the
    source's own wait (named ``tdmi-source-take``) at once, and no thread is left per source. A
    first source warms what starts lazily (the default thread pool keeps its idle threads, the
    detector's and the model's pools start at their first use), then three more come and go."""
    pid = sources_server.proc.pid
    _one_source(sources_server, camera)
    before = len(_threads(pid))
    for _ in range(3):
        running = _one_source(sources_server, camera)
        assert running >= before + 2  # its reader and its wait for frames
        until(lambda: "tdmi-source-tak" not in _threads(pid), "the source's wait ended", timeout=10)
    # a thread left per source would be three; one more may be a pool's lazy start
    until(lambda: len(_threads(pid)) <= before + 1, f"at most {before + 1} threads", timeout=10)


def test_a_camera_that_does_not_answer_is_reconnecting_with_a_clear_reason(
    sources_server: ServerProcess,
) -> None:
    logged_before = len(sources_server.log())
    created = _add(sources_server, f"rtsp://127.0.0.1:{free_port()}/cam")  # nothing listens there
    source_id = created["source_id"]
    try:
        until(lambda: _info(sources_server, source_id)["status"] == "reconnecting", "reconnecting", 60)
        info = _info(sources_server, source_id)
        assert "refused" in info["last_error"] and info["frames_read"] == 0 and info["live_since"] is None
        with connect(created["links"]["results"], open_timeout=30) as ws:
            first = json.loads(ws.recv(timeout=30))
        assert first["type"] == "status" and first["status"] == "reconnecting"
        assert "refused" in first["detail"]
    finally:
        _delete(sources_server, source_id)
    assert "Traceback" not in sources_server.log()[logged_before:]
