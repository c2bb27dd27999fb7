"""Bounded memory per live client: whatever a WebSocket client does (never read, read and never
ack, ack blindly and never read, stay silent, leave abruptly), a stream costs the server at most
its window of frames and is closed in bounded time. Against a real server whose RSS is sampled
while it is attacked; after every attack the server still serves a normal stream.

The bound of one stream, from the settings: its window of decoded frames (the clip's 2d+1 = 5
frames of tdmi-tiny, each at most ``max_frame_pixels`` x 3 bytes: 119 MiB at 3840x2160), at most
twice ``max_message_bytes`` of messages read ahead, and ``2 x (2 x ack_window + lookahead)``
unanswered frames (68 here) that hold no image. Before the fix a client that did not read kept
every decoded frame it sent until the stream ended (about 24 MiB per 4K frame, gigabytes within
seconds) and a send into a full TCP window blocked the stream's close forever.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from tdmi.protocol.stream import pack_frame
from tests.helpers.process import RssSampler
from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess, running_server

ACK_TIMEOUT_S = 3.0
IDLE_TIMEOUT_S = 6.0
WIDTH, HEIGHT = 3840, 2160  # the default max_frame_pixels: the largest frame a client may send
FRAME_MIB = WIDTH * HEIGHT * 3 / 2**20  # one decoded frame: 23.7 MiB
WINDOW_FRAMES = 5  # tdmi-tiny reads frames t-2 .. t+2
# the stream's window, a frame being decoded and its conversion copy, and allocator slack (the
# attacks below measured 40-190 MiB with 4K frames); the bug passed it within a second or two
RSS_BOUND_MIB = (WINDOW_FRAMES + 2) * FRAME_MIB + 64
# an API node decodes nothing: messages read ahead (2 x 8 MiB), the one in hand, the one its
# WebSocket parser assembles and the one on its way to Redis (with its copies), small replies
API_NODE_BOUND_MIB = 7 * 8 + 24
ENV = {
    "TDMI_ACK_TIMEOUT_S": str(ACK_TIMEOUT_S),
    "TDMI_WS_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    "TDMI_DETECTOR": "none",  # frames without client boxes need no model: the attacks cost decoding
    "TDMI_STALENESS_MS": "60000",  # a 2-core CI machine is slow: no live drops for staleness
}
CLOSED = re.compile(r"stream (\w+) closed: (\d+) ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("data"), tiny_checkpoint, env=ENV) as proc:
        yield proc


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 3840x2160 JPEG of about 100 KB: 24 MiB once decoded."""
    ramp = np.linspace(0, 255, WIDTH, dtype=np.uint8)
    pixels = np.repeat(np.repeat(ramp[None, :, None], HEIGHT, axis=0), 3, axis=2)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


class RawWebSocket:
    """A WebSocket client on a plain socket that reads only when told to (websockets' sans-I/O
    protocol makes and parses the frames). Its receive buffer is a few KiB and its segments are
    small (the server's send buffer grows with the segment size: 4 MiB on loopback's 64 KiB
    ones, a few hundred KiB on these), so a server that sends to it soon finds its window full."""

    def __init__(self, url: str):
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        address = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.settimeout(10)
        self.sock.connect((address.hostname, address.port))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.frames: list[Frame] = []
        while not any(isinstance(e, Response) for e in self._receive(10)):
            pass

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def _receive(self, timeout: float) -> list[Frame | Response]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        events = self.protocol.events_received()
        self.frames += [e for e in events if isinstance(e, Frame)]
        return events

    @property
    def messages(self) -> list[dict]:
        return [json.loads(f.data) for f in self.frames if f.opcode is Opcode.TEXT]

    def send(self, message: bytes | str, timeout: float = 2.0) -> bool:
        """Send one message; False when the server stopped taking data (its window stayed full)."""
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self.sock.settimeout(timeout)
        try:
            self._flush()
        except OSError:  # a timeout, or the server gone
            return False
        return True

    def stream_id(self) -> str:
        """Read up to ``ready``, only to learn the stream's id (nothing else comes before a frame)."""
        while not any(m["type"] == "ready" for m in self.messages):
            self._receive(30)
        return next(m["stream_id"] for m in self.messages if m["type"] == "ready")

    def read_to_the_end(self, timeout: float) -> int | None:
        """Read until the server ends the connection; its close code (None when the socket ended
        without a close frame: EOF, or reset with our unread data). Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionResetError):
            while self.protocol.close_rcvd is None and self.protocol.state is not State.CLOSED:
                self._receive(max(0.0, deadline - time.monotonic()))
        close = self.protocol.close_rcvd
        return close.code if close is not None else None

    def close(self) -> None:
        self.sock.close()


def _closed_in_log(server: ServerProcess, stream_id: str) -> int | None:
    """The code the server's log says it closed the stream with (None: not closed yet)."""
    for found_id, code in CLOSED.findall(server.log()):
        if found_id == stream_id:
            return int(code)
    return None


def _serves_normally(server: ServerProcess, frames: int = 6) -> None:
    """After an attack: ready, and a normal stream is answered frame by frame and ends with 1000."""
    assert server.proc.poll() is None
    assert httpx.get(f"{server.base}/readyz", timeout=10).status_code == 200
    small = cv2.imencode(".jpg", np.full((96, 128, 3), 90, np.uint8))[1].tobytes()
    with connect(f"{server.ws_base}/v1/stream", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config", "detector": "client", "lookahead": 0}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for i in range(frames):
            ws.send(json.dumps({"type": "boxes", "frame_id": i, "boxes": [[10, 10, 60, 90]]}))
            ws.send(pack_frame(small, i, 0.0))
            result = json.loads(ws.recv(timeout=30))
            assert result["type"] == "result" and result["frame_id"] == i, result
            assert len(result["persons"]) == 1
            ws.send(json.dumps({"type": "ack", "frame_id": i}))
        ws.send(json.dumps({"type": "end"}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "ended", "frames": frames, "dropped": 0}
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1000


def _flood(
    server: ServerProcess,
    client: RawWebSocket,
    stream_id: str,
    frame: bytes,
    rss: list[RssSampler],
    ack: bool = False,
    deadline_s: float = ACK_TIMEOUT_S + 12,
) -> float | None:
    """Send frames as fast as the server takes them, never reading (and acknowledging every
    result blindly when ``ack``), until the server's log says it closed the stream; seconds until
    then (None: not within the deadline). Stops early once a process has grown far past the bound,
    so that the bug fails the test without taking the machine's memory."""
    start = time.monotonic()
    frame_id = 0
    while time.monotonic() - start < deadline_s:
        if _closed_in_log(server, stream_id) is not None:
            return time.monotonic() - start
        if any(sampler.growth > 3 * RSS_BOUND_MIB for sampler in rss):
            return None
        if client.send(pack_frame(frame, frame_id, 0.0), timeout=0.5):
            frame_id += 1
            if ack:
                client.send(json.dumps({"type": "ack", "frame_id": 2**64 - 1}), timeout=0.5)
        else:
            time.sleep(0.1)  # the server stopped reading us: wait for what it does next
    return None


@pytest.mark.slow
def test_a_client_that_never_reads_costs_at_most_its_window_and_is_closed_4008(
    server: ServerProcess, big_jpeg: bytes
) -> None:
    client = RawWebSocket(f"{server.ws_base}/v1/stream")
    try:
        assert client.send(json.dumps({"type": "config"}))
        stream_id = client.stream_id()
        with RssSampler(server.proc.pid) as rss:
            closed_after = _flood(server, client, stream_id, big_jpeg, [rss])
        assert rss.growth < RSS_BOUND_MIB, f"the server grew by {rss.growth:.0f} MiB"
        # dropped, then closed after 2 x (2 x 16 + 2) unanswered frames or the ack timeout
        assert closed_after is not None and closed_after < ACK_TIMEOUT_S + 6, f"closed after {closed_after}"
        assert _closed_in_log(server, stream_id) == 4008
        assert client.read_to_the_end(timeout=15) == 4008, client.messages[-3:]
        error = client.messages[-1]
        assert error["type"] == "error" and error["error"] == "client_behind", error
    finally:
        client.close()
    _serves_normally(server)


@pytest.mark.slow
def test_a_client_that_acks_blindly_and_never_reads_is_closed_although_its_window_is_full(
    server: ServerProcess,
) -> None:
    """Acks for every result keep the server sending to a client that reads nothing, until its TCP
    window is full and every send blocks: the stream must still end (a send that never completes
    held its close forever: the log never said it closed while the client did not read)."""
    tiny = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
    client = RawWebSocket(f"{server.ws_base}/v1/stream")
    try:
        assert client.send(json.dumps({"type": "config"}))
        stream_id = client.stream_id()
        with RssSampler(server.proc.pid) as rss:
            closed_after = _flood(server, client, stream_id, tiny, [rss], ack=True, deadline_s=40)
        assert closed_after is not None, "the stream never ended while its client did not read"
        assert _closed_in_log(server, stream_id) == 4008
        assert rss.growth < 64, f"the server grew by {rss.growth:.0f} MiB"
        # what the server had sent is still readable, and then the connection ends (no close
        # frame could be sent in time: the server dropped the socket)
        assert client.read_to_the_end(timeout=15) in (None, 4008)
    finally:
        client.close()
    _serves_normally(server)


def _receive_all(ws: ClientConnection, seen: list[dict]) -> None:
    """Whatever the server sent meanwhile, without waiting; acknowledging nothing."""
    with contextlib.suppress(TimeoutError):
        while True:
            seen.append(json.loads(ws.recv(timeout=0)))


@pytest.mark.slow
def test_a_client_that_reads_but_never_acks_is_closed_4008_within_the_ack_timeout(
    server: ServerProcess, big_jpeg: bytes
) -> None:
    seen: list[dict] = []
    window_full_at = None
    with RssSampler(server.proc.pid) as rss, connect(f"{server.ws_base}/v1/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "config"}))
        window = json.loads(ws.recv(timeout=30))["ack_window"]
        start = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            for frame_id in range(1000):  # 4K frames at 25 fps, for 40 s at most
                ws.send(pack_frame(big_jpeg, frame_id, 0.0))
                _receive_all(ws, seen)
                if window_full_at is None and len(seen) >= window:
                    window_full_at = time.monotonic()
                if rss.growth > 3 * RSS_BOUND_MIB:
                    break
                time.sleep(max(0.0, start + (frame_id + 1) / 25 - time.monotonic()))
        with contextlib.suppress(ConnectionClosed):  # what came before the close
            while True:
                seen.append(json.loads(ws.recv(timeout=10)))
        closed_at = time.monotonic()
    assert ws.close_code == 4008, seen[-3:]
    assert seen[-1]["type"] == "error" and seen[-1]["error"] == "client_behind", seen[-1]
    assert len([m for m in seen if m["type"] in ("result", "dropped")]) == window  # never more
    assert window_full_at is not None, f"only {len(seen)} replies"
    assert closed_at - window_full_at < ACK_TIMEOUT_S + 3, f"closed {closed_at - window_full_at:.1f} s after"
    assert rss.growth < RSS_BOUND_MIB, f"the server grew by {rss.growth:.0f} MiB"
    _serves_normally(server)


@pytest.mark.slow
def test_a_silent_client_is_closed_after_the_idle_timeout_with_an_error_first(server: ServerProcess) -> None:
    with connect(f"{server.ws_base}/v1/stream") as ws:
        ws.send(json.dumps({"type": "config"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        start = time.monotonic()
        error = json.loads(ws.recv(timeout=IDLE_TIMEOUT_S + 10))
        waited = time.monotonic() - start
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=10)
    assert error["type"] == "error" and error["error"] == "idle_timeout", error
    assert IDLE_TIMEOUT_S - 0.5 < waited < IDLE_TIMEOUT_S + 5, waited
    assert ws.close_code == 4000
    _serves_normally(server)


def _send_fast_and_read_everything(
    server: ServerProcess, frame: bytes, people: list[list[float]] | None, frames: int
) -> list[dict]:
    """A good client in a hurry: it sends every frame at once (all fit in the server's read-ahead),
    and reads and acknowledges every answer on a thread of its own. Its answers (one per frame, in
    order, asserted), once the stream ended normally (1000)."""
    seen: list[dict] = []

    def read_and_ack(ws: ClientConnection) -> None:
        while not seen or seen[-1]["type"] not in ("ended", "error"):
            seen.append(json.loads(ws.recv(timeout=60)))
            if seen[-1]["type"] in ("result", "dropped"):
                ws.send(json.dumps({"type": "ack", "frame_id": seen[-1]["frame_id"]}))

    with connect(f"{server.ws_base}/v1/stream", max_size=None) as ws:
        ws.send(json.dumps({"type": "config", "detector": "client" if people else "auto"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        reader = threading.Thread(target=read_and_ack, args=(ws,))
        reader.start()
        with contextlib.suppress(ConnectionClosed):
            for frame_id in range(frames):
                if people:
                    ws.send(json.dumps({"type": "boxes", "frame_id": frame_id, "boxes": people}))
                ws.send(pack_frame(frame, frame_id, 0.0))
            ws.send(json.dumps({"type": "end"}))
        reader.join(timeout=120)
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=10)
    assert ws.close_code == 1000 and seen[-1]["type"] == "ended", seen[-2:]
    answers = [m for m in seen if m["type"] in ("result", "dropped")]
    assert [m["frame_id"] for m in answers] == list(range(frames))
    return answers


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[dict[str, ServerProcess]]:
    """An API node and one worker on their own redis-server: the stream's frames cross Redis."""
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    env = {**ENV, "TDMI_REDIS_URL": redis.url(), "TDMI_NODE_HEARTBEAT_S": "0.25"}
    data, model = tmp_path_factory.mktemp("cluster"), f"tdmi-tiny={tiny_checkpoint}"
    nodes = {
        "worker": ServerProcess(data, "--model", model, "--worker-id", "w1", env=env, command="worker"),
        "api": ServerProcess(data, "--model", model, env=env),
    }
    try:
        for node in nodes.values():
            node.wait_ready()
        deadline = time.monotonic() + 30
        while not httpx.get(f"{nodes['api'].base}/v1/workers", timeout=5).json()["workers"]:
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.1)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()
        redis.stop()


@pytest.mark.redis
@pytest.mark.slow
def test_in_a_cluster_a_client_that_never_reads_grows_neither_the_api_node_nor_the_worker(
    cluster: dict[str, ServerProcess], big_jpeg: bytes
) -> None:
    """The API node decodes nothing; the worker holds the stream's window. Before the fix the
    worker kept every frame the API node had dropped as ``client_behind`` decoded."""
    api, worker = cluster["api"], cluster["worker"]
    client = RawWebSocket(f"{api.ws_base}/v1/stream")
    try:
        assert client.send(json.dumps({"type": "config"}))
        stream_id = client.stream_id()
        with RssSampler(api.proc.pid) as api_rss, RssSampler(worker.proc.pid) as worker_rss:
            closed_after = _flood(api, client, stream_id, big_jpeg, [api_rss, worker_rss])
        assert worker_rss.growth < RSS_BOUND_MIB, f"the worker grew by {worker_rss.growth:.0f} MiB"
        assert api_rss.growth < API_NODE_BOUND_MIB, f"the API node grew by {api_rss.growth:.0f} MiB"
        assert closed_after is not None and closed_after < ACK_TIMEOUT_S + 6, closed_after
        assert client.read_to_the_end(timeout=15) == 4008, client.messages[-3:]
        assert client.messages[-1]["error"] == "client_behind", client.messages[-1]
    finally:
        client.close()
    _serves_normally(api)


@pytest.mark.redis
@pytest.mark.slow
def test_in_a_cluster_a_client_faster_than_its_worker_is_held_back_not_dropped(
    cluster: dict[str, ServerProcess],
) -> None:
    """Frames of eight persons each, small: the worker answers them far slower than they come.
    The API node forwards at most ``lookahead + 4`` and takes the next ones only as answers come
    back. Before the fix it forwarded every frame at once, to queue on the worker, and as their
    answers were slow to come the client was counted as behind and its frames dropped."""
    people = [[8.0 * i, 10.0, 8.0 * i + 40.0, 200.0] for i in range(8)]
    small = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()
    answers = _send_fast_and_read_everything(cluster["api"], small, people, frames=50)
    dropped = [m["reason"] for m in answers if m["type"] == "dropped"]
    assert dropped == [], f"{len(dropped)} frames dropped, the first as {dropped[:1]}"


@pytest.mark.slow
def test_streams_that_end_any_way_leave_no_task_behind(server: ServerProcess, big_jpeg: bytes) -> None:
    """Every task a stream starts is cancelled and awaited when it ends: none is destroyed pending
    (``_Inbox.get()`` was, for every client that left while the server waited for its next
    message). Stops the server, whose shutdown collects what was left: so this test comes last."""
    for _ in range(3):  # clients that leave while their frames are handled
        client = RawWebSocket(f"{server.ws_base}/v1/stream")
        for frame_id in range(8):
            client.send(pack_frame(big_jpeg, frame_id, 0.0))
        client.close()
    small = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()
    # clients that read a result, then leave without `end`; enough that the garbage collector's
    # full passes come and find what they left (before the fix nearly every one left a task)
    for _ in range(30):
        with connect(f"{server.ws_base}/v1/stream", max_size=None) as ws:
            for frame_id in range(3):
                ws.send(pack_frame(small, frame_id, 0.0))
            while json.loads(ws.recv(timeout=30)).get("frame_id") != 0:
                pass
    with connect(f"{server.ws_base}/v1/stream") as ws:  # and one that ends at once
        ws.send(json.dumps({"type": "end"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ended"
    _serves_normally(server)
    server.stop()
    log = server.log()
    assert "Task was destroyed" not in log and "never retrieved" not in log, log[-3000:]
