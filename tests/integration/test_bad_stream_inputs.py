"""Bad input on the live WebSocket that the real feed meets (frames smaller than the detector's
window, a client gone with frames queued, fuzzing), and the secrets around it, on real servers.
Bad messages and bounds of the protocol itself are tested in-process
(tests/integration/http_layer/test_ws_protocol.py).

The page sends its key as ``?api_key=`` (browsers cannot set headers on a WebSocket), so every
connection here does too (the shared server has no keys and ignores it; the log test's server
wants it and is read for it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tdmi.protocol.stream import pack_frame
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.shared_fixtures import SERVER_ENV
from tests.helpers.waits import messages_until

KEY = "test-key-7c1e0f5a9b"


@pytest.fixture(scope="module")
def keyed(server_factory: ServerFactory) -> ServerProcess:
    """The shared server's configuration with an API key."""
    return server_factory.get(env={**SERVER_ENV, "TDMI_API_KEYS": json.dumps([KEY])})


def _connect(server: ServerProcess) -> ClientConnection:
    return connect(f"{server.ws_base}/v1/stream?api_key={KEY}", max_size=None)


def _image(width: int, height: int, ext: str) -> bytes:
    pixels = np.full((height, width, 3), 90, np.uint8)
    return cv2.imencode(ext, pixels)[1].tobytes()


def _alive(server: ServerProcess) -> None:
    assert server.proc.poll() is None
    assert httpx.get(f"{server.base}/readyz").status_code == 200


def _tiny_frames(server: ServerProcess, detector: str) -> list[dict]:
    sizes = [(1, 1), (2, 2), (64, 64)]
    with _connect(server) as ws:
        ws.send(json.dumps({"type": "config", "detector": detector, "lookahead": 0, "detect_every": 1}))
        assert messages_until(ws, "ready")[-1]["type"] == "ready"
        for width, height in sizes:
            for ext in (".jpg", ".png"):
                if detector == "client":
                    ws.send(json.dumps({"type": "boxes", "boxes": [[0, 0, width, height]]}))
                ws.send(_image(width, height, ext))
        ws.send(json.dumps({"type": "end"}))
        messages = messages_until(ws, "ended")
    results = [m for m in messages if m["type"] == "result"]
    assert len(results) == 2 * len(sizes), messages
    return results


@pytest.mark.slow
def test_tiny_frames_with_client_boxes(server: ServerProcess) -> None:
    """1x1, 2x2 and 64x64 JPEG and PNG frames are cropped and answered; the server stays up."""
    results = _tiny_frames(server, "client")
    assert all(len(r["persons"]) == 1 for r in results)
    _alive(server)


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
def test_a_client_that_leaves_frees_its_slot_before_its_queued_frames_are_handled(
    server: ServerProcess,
) -> None:
    """Frames still queued when the client vanishes are not worked through before the slot is free."""
    decode = 'tdmi_stage_seconds_count{stage="decode"}'
    before = _metric(server, decode)
    rng = np.random.default_rng(0)
    frame = cv2.imencode(".png", rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))[1].tobytes()
    sent = 40
    with contextlib.suppress(ConnectionClosed, OSError), _connect(server) as ws:
        ws.send(json.dumps({"type": "config", "detector": "detector", "detect_every": 1}))
        messages_until(ws, "ready")
        for _ in range(sent):
            ws.send(frame)
        ws.socket.close()  # gone without a closing handshake, as a killed browser tab
    deadline = time.monotonic() + 60
    while _metric(server, "tdmi_active_streams") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server, "tdmi_active_streams") == 0
    assert _metric(server, decode) - before < sent  # the slot was free before the frames were done
    with _connect(server) as again:
        again.send(json.dumps({"type": "config"}))
        assert messages_until(again, "ready")[-1]["type"] == "ready"
    _alive(server)


@pytest.mark.slow
def test_no_key_in_any_log_line(keyed: ServerProcess) -> None:
    """uvicorn prints paths with their query strings: the key in ``?api_key=`` is masked; the
    settings line counts the keys."""
    assert httpx.get(f"{keyed.base}/readyz", params={"api_key": KEY}).status_code == 200
    with _connect(keyed) as ws:
        ws.send(json.dumps({"type": "end"}))
    log = keyed.log()
    assert "api_key=***" in log
    assert KEY not in log
    # the start-up's settings (those that differ from their defaults) count the keys
    assert any(line.endswith("api_keys = 1 configured") for line in log.splitlines())


@pytest.mark.parametrize(
    "keys",
    # each starts `tdmi serve` (4 s): the quick selection keeps the first
    [
        '[""]',
        pytest.param('["  "]', marks=pytest.mark.slow),
        pytest.param(f'["", "{KEY}"]', marks=pytest.mark.slow),
    ],
)
def test_blank_api_keys_are_refused_at_start_up(tmp_path: Path, keys: str) -> None:
    env = {**os.environ, "TDMI_API_KEYS": keys}
    done = subprocess.run(
        [sys.executable, "-m", "tdmi.service.cli", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "is empty" in done.stderr and KEY not in done.stderr + done.stdout


SERVER_TYPES = {"ready", "result", "dropped", "resumed", "error", "ended"}
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_controls = st.fixed_dictionaries(
    {"type": st.sampled_from(["config", "boxes", "ack", "end", "warp"])},
    optional={
        "frame_id": st.integers(-5, 2**70) | _json_values,
        "boxes": st.lists(st.lists(st.floats() | st.integers(-10, 100), max_size=6), max_size=4)
        | _json_values,
        "ack_window": st.integers(-2, 5000) | _json_values,
        "lookahead": st.integers(-2, 9) | _json_values,
        "detector": st.sampled_from(["auto", "client", "nope"]),
        "model": st.text(max_size=10),
    },
)
_texts = st.one_of(_controls.map(json.dumps), _json_values.map(json.dumps), st.text(max_size=40))


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    """Real JPEG/PNG of any small size, cut or not, with or without the frame header; or junk."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    data = _image(width, height, draw(st.sampled_from([".jpg", ".png"])))
    data = data[: draw(st.integers(1, len(data)))] if draw(st.booleans()) else data
    if draw(st.booleans()):
        data = pack_frame(data, draw(st.integers(0, 2**64 - 1)), draw(st.floats()))
    return data


_messages = st.lists(st.one_of(_texts, _frames()), max_size=8)


@pytest.mark.slow
def test_websocket_fuzzing(server: ServerProcess) -> None:
    """Hypothesis: any sequence of text and binary messages gets JSON answers, never a 1011 or a crash."""

    @given(messages=_messages)
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(messages: list[str | bytes]) -> None:
        with _connect(server) as ws:
            ws.send(
                json.dumps({"type": "config", "detector": "client"})
            )  # the detector guard is tested apart
            with contextlib.suppress(ConnectionClosed):  # a generated `end` may close it first
                for message in messages:
                    ws.send(message)
                ws.send(json.dumps({"type": "end"}))
            with contextlib.suppress(ConnectionClosed):
                while True:
                    reply = json.loads(ws.recv(timeout=60))
                    assert reply["type"] in SERVER_TYPES, reply
                    if reply["type"] == "error":
                        assert isinstance(reply["error"], str) and isinstance(reply["detail"], str)
                    if reply["type"] in ("result", "dropped"):
                        with contextlib.suppress(ConnectionClosed):
                            ws.send(json.dumps({"type": "ack", "frame_id": reply["frame_id"]}))
        assert ws.close_code in (1000, 4000), (ws.close_code, ws.close_reason)

    fuzz()
    _alive(server)


@pytest.mark.slow
def test_tiny_frames_with_the_detector(server: ServerProcess) -> None:
    """Frames smaller than the detector's window get no detections, never a crash (last: before the
    detector's guard, this killed the server)."""
    results = _tiny_frames(server, "detector")
    assert all(r["persons"] == [] for r in results[:4])  # 1x1 and 2x2: nobody can be found
    _alive(server)
