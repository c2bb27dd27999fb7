"""Bounded work per request, against a real server: request heads are held to a size and a time
before the application sees them, bodies to a silence, connections to a number, and every
answer at the edge is the JSON error with an X-Request-ID (issue 21, item 1 and its weaker cases).

Each attack is made with raw sockets (no client library would send it), while the server's
RSS is sampled and ``/readyz`` is asked from another connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.process import RssSampler
from tests.helpers.server import ServerProcess, running_server
from tests.integration.conftest import SynthVideo

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
MAX_CONNECTIONS = 48
EDGE = {
    "TDMI_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "TDMI_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    "TDMI_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
}
MIB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("edge"), tiny_checkpoint, env=EDGE) as proc:
        yield proc


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the first byte sent until the server closed

    def error(self) -> dict:
        assert self.headers.get("content-type") == "application/json", self
        assert len(self.headers.get("x-request-id", "")) >= 16, self
        return json.loads(self.body)


def _parse(raw: bytes, seconds: float) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/1.1 ") else 0
    return Answer(status, headers, body, seconds)


def _exchange(server: ServerProcess, data: bytes, timeout: float = 20) -> Answer:
    """Send ``data`` on a new connection (from a thread: the server may answer before it has
    read all of it, and close) while reading whatever comes back until the server closes."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(timeout)

    def send() -> None:
        with contextlib.suppress(OSError):  # the server answered and closed first: read below
            sock.sendall(data)

    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    raw = b""
    try:
        while chunk := sock.recv(65536):
            raw += chunk
    except ConnectionResetError:  # the rest of what we sent was unread when it closed
        pass
    seconds = time.monotonic() - started
    sender.join(timeout)
    sock.close()
    return _parse(raw, seconds)


def _readyz_seconds(server: ServerProcess) -> float:
    started = time.monotonic()
    reply = httpx.get(f"{server.base}/readyz", timeout=30)
    assert reply.status_code == 200, reply.text
    return time.monotonic() - started


def _attack_in_parallel(server: ServerProcess, payload: bytes, count: int) -> tuple[list[Answer], float]:
    """``count`` connections send ``payload`` at once; (their answers, /readyz's slowest latency
    asked meanwhile from another connection)."""
    answers: list[Answer] = []
    attackers = [
        threading.Thread(target=lambda: answers.append(_exchange(server, payload))) for _ in range(count)
    ]
    for attacker in attackers:
        attacker.start()
    readyz = [_readyz_seconds(server) for _ in range(3)]
    for attacker in attackers:
        attacker.join(60)
    return answers, max(readyz)


HOST = b"Host: 127.0.0.1\r\n"
GET = b"GET / HTTP/1.1\r\n" + HOST
ATTACKS = {  # name: (request, status, error kind)
    "a 4 MiB URL": (b"GET /" + b"a" * (4 * MIB) + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "url_too_long"),
    "a 4 MiB header": (GET + b"X-Big: " + b"a" * (4 * MIB) + b"\r\n\r\n", 431, "headers_too_large"),
    "500,000 headers": (GET + b"X-A: b\r\n" * 500_000 + b"\r\n", 431, "headers_too_large"),
    "a 12 KB URL, whole": (b"GET /" + b"a" * 12_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "url_too_long"),
    "20 KB of headers, whole": (GET + b"X-Some: value\r\n" * 1500 + b"\r\n", 431, "headers_too_large"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_oversized_request_head_is_refused_at_once_in_bounded_memory(
    server: ServerProcess, attack: str
) -> None:
    """16 connections at once, each sending megabytes of request line or headers: each is
    answered 414/431 in JSON within seconds, /readyz answers meanwhile, and the server's memory
    grows by far less than what was sent (64 MiB): a head is buffered up to its limit, no more.
    Before, uvicorn's parser took any size and the log's secret mask was quadratic in it: a 60 KB
    URL froze the whole server for 20 s."""
    payload, status, kind = ATTACKS[attack]
    with RssSampler(server.proc.pid, interval_s=0.01) as rss:
        answers, readyz_s = _attack_in_parallel(server, payload, 16)
    assert [a.status for a in answers] == [status] * 16, answers[0]
    assert {a.error()["error"] for a in answers} == {kind}
    assert max(a.seconds for a in answers) < 5.0
    assert readyz_s < 2.0
    assert rss.growth < 24, f"RSS grew {rss.growth:.1f} MiB under {attack}"


def test_a_slowloris_head_is_closed_after_the_header_timeout(server: ServerProcess) -> None:
    """32 connections each send half a request head, then nothing: the server closes each one
    header_timeout_s later (not before, not much after), and answers /readyz meanwhile."""
    connections = []
    for _ in range(32):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /readyz HTTP/1.1\r\n" + HOST + b"X-Slow: 1\r\n")
        sock.settimeout(HEADER_TIMEOUT_S + 10)
        connections.append((sock, time.monotonic()))
    assert _readyz_seconds(server) < 2.0
    held = []
    for sock, opened in connections:
        assert sock.recv(1024) == b""  # closed by the server, without an answer
        held.append(time.monotonic() - opened)
        sock.close()
    assert min(held) > HEADER_TIMEOUT_S - 0.5
    assert max(held) < HEADER_TIMEOUT_S + 5.0
    deadline = time.monotonic() + 10  # a thread writes the log
    while "no whole request head within 2 s" not in server.log():
        assert time.monotonic() < deadline, "the closes are not logged"
        time.sleep(0.1)


def test_a_stalled_upload_body_is_answered_408(server: ServerProcess) -> None:
    """An upload that promises 100 KB, sends 40 bytes and stalls gets 408 request_timeout
    body_timeout_s later, and its connection is closed."""
    head = (
        b"POST /v1/pose HTTP/1.1\r\n" + HOST + b"Content-Type: multipart/form-data; boundary=b0\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    part = b'--b0\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nsome bytes'
    answer = _exchange(server, head + part, timeout=BODY_TIMEOUT_S + 20)
    assert answer.status == 408 and answer.error()["error"] == "request_timeout"
    assert answer.headers["connection"] == "close"
    assert BODY_TIMEOUT_S - 0.5 < answer.seconds < BODY_TIMEOUT_S + 5.0


def test_connections_beyond_the_limit_are_answered_503_and_the_server_recovers(server: ServerProcess) -> None:
    """With max_connections open (idle) connections, one more request gets 503 in JSON at once;
    once they are gone, the server answers as before."""
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        started = time.monotonic()
        refused = httpx.get(f"{server.base}/readyz", timeout=10)
        assert time.monotonic() - started < 2.0
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "too_many_connections" and refused.headers["x-request-id"]
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.base}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "still refused after the idle connections closed"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\n" + HOST + b"A header without a colon\r\n\r\n",
        b"POST /v1/pose HTTP/1.1\r\n" + HOST + b"Content-Length: many\r\n\r\n",
        b"GET /\x1b[31m HTTP/1.1\r\n" + HOST + b"\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS hello
    ],
    ids=["not-http", "header-without-colon", "bad-content-length", "control-in-target", "tls-hello"],
)
def test_malformed_http_is_answered_400_in_json_with_a_request_id(
    server: ServerProcess, request_bytes: bytes
) -> None:
    answer = _exchange(server, request_bytes)
    assert answer.status == 400
    assert answer.error() == {"error": "invalid_request", "detail": "malformed HTTP request"}


def _multipart(filename: bytes, content: bytes) -> bytes:
    """A body with the file name as given, byte for byte (clients would escape it)."""
    return (
        b'--b0\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: video/mp4\r\n\r\n" + content + b"\r\n--b0--\r\n"
    )


def _upload(server: ServerProcess, filename: bytes, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.base}/v1/pose",
        content=_multipart(filename, content),
        headers={"Content-Type": "multipart/form-data; boundary=b0"},
        timeout=60,
    )


def test_a_5000_character_file_name_is_accepted_and_shown_cut(
    server: ServerProcess, synth_video: SynthVideo
) -> None:
    """A file name of 5,000 characters is a name, not a malformed body: a video with it is
    accepted; an answer that names it shows 255 characters and says how many were left out."""
    name = b"n" * 4996 + b".mp4"
    assert _upload(server, name, synth_video.path.read_bytes()).status_code == 202
    refused = _upload(server, name, b"not a video")
    assert refused.status_code == 415, refused.text
    detail = refused.json()["detail"]
    assert "n" * 255 + "...[4745 more characters]" in detail and len(detail) < 400


def test_a_file_name_beyond_the_part_header_limit_gets_a_4xx_that_says_so(server: ServerProcess) -> None:
    refused = _upload(server, b"n" * 20_000 + b".mp4", b"not a video")
    assert refused.status_code == 422, refused.text
    assert "file name" in refused.json()["detail"] and len(refused.text) < 300


def test_a_long_job_id_is_answered_cut(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.base}/v1/pose/{'f' * 5000}", timeout=10)
    assert reply.status_code == 404
    assert len(reply.json()["detail"]) < 120 and "more characters" in reply.json()["detail"]


@pytest.mark.slow
def test_an_upload_cut_by_shutdown_is_answered_503_in_json(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """SIGTERM while an upload is still trickling in: once the grace period (10 s) is over the
    server cancels it, and the client gets 503 shutting_down in JSON with an X-Request-ID, not
    uvicorn's plain-text 500."""
    server = ServerProcess(tmp_path, "--model", f"tdmi-tiny={tiny_checkpoint}")
    try:
        server.wait_ready()
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /v1/pose HTTP/1.1\r\n" + HOST + b"Content-Type: multipart/form-data; boundary=b0\r\n"
            b"Content-Length: 1000000\r\n\r\n" + _multipart(b"a.mp4", b"")[:60]
        )
        time.sleep(0.5)  # the request is in the application before the signal
        os.kill(server.proc.pid, signal.SIGTERM)
        sock.setblocking(False)
        raw, deadline = b"", time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                sock.send(b"x")  # a byte each 0.2 s: never silent for the body timeout
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
            except BlockingIOError:
                pass
            time.sleep(0.2)
        sock.close()
        answer = _parse(raw, 0)
        assert answer.status == 503, raw
        assert answer.error()["error"] == "shutting_down"
    finally:
        server.stop()
    assert "Traceback" not in server.log()
