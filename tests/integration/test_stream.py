"""Live feeds over a real WebSocket on a real server: concurrent streams, client boxes, the real
feed's errors, a slow client. The protocol itself is tested in-process
(tests/integration/http_layer/test_ws_protocol.py)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tdmi.protocol.stream import pack_frame
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.synth import SynthVideo


@pytest.fixture(scope="module")
def jpegs(synth_video: SynthVideo) -> list[bytes]:
    with av.open(str(synth_video.path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]


def _messages(ws: ClientConnection, until: str = "ended", timeout: float = 60) -> Iterator[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        yield message
        if message["type"] == until:
            return
    raise AssertionError(f"no {until!r} message within {timeout} s")


def _run_stream(
    server: ServerProcess, jpegs: list[bytes], boxes: dict[str, list], out: dict, key: str
) -> None:
    with connect(f"{server.ws_base}/v1/stream") as ws:
        ws.send(json.dumps({"type": "config", "detector": "client", "lookahead": 2, "ack_window": 64}))
        ready = json.loads(ws.recv(timeout=30))
        for i, jpeg in enumerate(jpegs):
            ws.send(json.dumps({"type": "boxes", "frame_id": 1000 + i, "boxes": boxes[str(i)]}))
            ws.send(pack_frame(jpeg, 1000 + i, 12.5 + i / 25))
        ws.send(json.dumps({"type": "end"}))
        out[key] = [ready, *_messages(ws)]
        out[key + ":close"] = ws.close_code if ws.close_code is not None else _wait_close(ws)


def _wait_close(ws: ClientConnection) -> int | None:
    """The close code, once whatever came before it (a closing error) is read."""
    deadline = time.monotonic() + 10
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    return ws.close_code


def test_several_live_streams_at_once_each_in_order_with_own_track_ids(
    server: ServerProcess, jpegs: list[bytes], synth_video: SynthVideo
) -> None:
    boxes = synth_video.boxes()
    out: dict = {}
    threads = [
        threading.Thread(target=_run_stream, args=(server, jpegs, boxes, out, f"s{i}")) for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    track_sets = []
    for i in range(3):
        messages = out[f"s{i}"]
        assert messages[0]["type"] == "ready" and messages[0]["lookahead"] == 2
        results = [m for m in messages if m["type"] == "result"]
        assert [m["frame_id"] for m in results] == [
            1000 + k for k in range(len(jpegs))
        ]  # every frame, in order
        assert results[3]["timestamp"] == pytest.approx(12.5 + 3 / 25)
        assert all(len(m["persons"]) == len(boxes[str(k)]) for k, m in enumerate(results))
        assert all(m["latency_ms"] > 0 for m in results)
        assert messages[-1] == {"type": "ended", "frames": len(jpegs), "dropped": 0}
        assert out[f"s{i}:close"] == 1000
        track_sets.append({p["track_id"] for m in results for p in m["persons"]})
    assert not (track_sets[0] & track_sets[1]) and not (track_sets[1] & track_sets[2])  # never shared


@pytest.mark.slow
def test_the_feeds_errors_leave_the_stream_going(server: ServerProcess, jpegs: list[bytes]) -> None:
    """A corrupt frame and bad boxes, as the real feed (decoder, crops, engine) meets them."""
    with connect(f"{server.ws_base}/v1/stream") as ws:
        ws.send(json.dumps({"type": "config", "lookahead": 0, "detector": "client"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(pack_frame(jpegs[0][: len(jpegs[0]) // 3], 1, 0.0))  # corrupt JPEG
        error = json.loads(ws.recv(timeout=10))
        assert error["error"] == "corrupt" and error["frame_id"] == 1
        ws.send(json.dumps({"type": "boxes", "frame_id": 2, "boxes": [[1, 2, 3]]}))
        ws.send(pack_frame(jpegs[0], 2, 0.0))
        error = json.loads(ws.recv(timeout=10))
        assert error["error"] == "invalid_boxes" and error["frame_id"] == 2
        result = json.loads(ws.recv(timeout=30))
        assert result["type"] == "result" and result["frame_id"] == 2 and result["persons"] == []
        ws.send(json.dumps({"type": "boxes", "frame_id": 3, "boxes": [[10, 10, 80, 120]]}))
        ws.send(pack_frame(jpegs[1], 3, 0.0))
        result = json.loads(ws.recv(timeout=30))
        assert result["frame_id"] == 3 and len(result["persons"]) == 1


def test_oversize_message_closes_the_connection_and_nothing_else(server: ServerProcess) -> None:
    with connect(f"{server.ws_base}/v1/stream", max_size=None, compression=None) as ws:
        # the server refuses the frame by its header and fails the connection with 1009 while the
        # client may still be sending: the client then cannot read the close frame (1006)
        with contextlib.suppress(ConnectionClosed):
            ws.send(b"\xff" * (9 * 1024 * 1024))
        assert _wait_close(ws) in (1009, 1006)
    with connect(f"{server.ws_base}/v1/stream") as ws:  # the next client is served as ever
        ws.send(json.dumps({"type": "config", "lookahead": 0}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"


@pytest.mark.slow
def test_a_client_that_never_acks_is_closed_and_others_are_not_disturbed(
    server_factory: ServerFactory, tiny_checkpoint: Path, jpegs: list[bytes], synth_video: SynthVideo
) -> None:
    env = {"TDMI_ACK_TIMEOUT_S": "2", "TDMI_REQUIRE_CONFIG": "true", "TDMI_STALENESS_MS": "100"}
    slow_server = server_factory.get("--model", f"tdmi-tiny={tiny_checkpoint}", env=env)
    with connect(f"{slow_server.ws_base}/v1/stream") as slow:
        slow.send(pack_frame(jpegs[0], 0, 0.0))
        assert json.loads(slow.recv(timeout=10))["error"] == "config_required"
        slow.send(json.dumps({"type": "config", "detector": "client", "lookahead": 0, "ack_window": 2}))
        assert json.loads(slow.recv(timeout=10))["type"] == "ready"
        for i, jpeg in enumerate(jpegs[:8]):
            slow.send(json.dumps({"type": "boxes", "frame_id": i, "boxes": [[10, 10, 80, 120]]}))
            slow.send(pack_frame(jpeg, i, 0.0))
        got = [json.loads(slow.recv(timeout=10)) for _ in range(2)]
        assert [m["frame_id"] for m in got] == [0, 1]
        out: dict = {}
        _run_stream(slow_server, jpegs, synth_video.boxes(), out, "other")  # meanwhile, a good client
        answers = [m for m in out["other"] if m["type"] in ("result", "dropped")]
        # with a 100 ms staleness budget some frames of the burst may be dropped, but every frame
        # is answered exactly once and in order
        assert [m["frame_id"] for m in answers] == [1000 + k for k in range(len(jpegs))]
        dropped = [m for m in answers if m["type"] == "dropped"]
        assert all(m["reason"].startswith("stale") for m in dropped)
        assert out["other"][-1] == {"type": "ended", "frames": len(jpegs), "dropped": len(dropped)}
        assert out["other:close"] == 1000
        assert _wait_close(slow) == 4008  # the window stayed full past the ack timeout


@pytest.mark.slow
def test_clients_that_close_right_after_ended_leave_no_error_in_the_log(
    server: ServerProcess, jpegs: list[bytes], synth_video: SynthVideo
) -> None:
    """The usual client ends, reads ``ended`` and closes at once, racing the server's own close
    (which lost under load and logged an ASGI traceback for a stream that ended well)."""
    boxes = synth_video.boxes()
    ended: list[dict] = []
    logged_before = len(server.log())  # the server is shared: only this test's lines count

    def stream_and_leave() -> None:
        with connect(f"{server.ws_base}/v1/stream") as ws:
            ws.send(json.dumps({"type": "config", "detector": "client", "ack_window": 64}))
            json.loads(ws.recv(timeout=30))
            for i, jpeg in enumerate(jpegs):
                ws.send(json.dumps({"type": "boxes", "frame_id": i, "boxes": boxes[str(i)]}))
                ws.send(pack_frame(jpeg, i, i / 25))
            ws.send(json.dumps({"type": "end"}))
            ended.append(list(_messages(ws))[-1])

    for _ in range(3):
        threads = [threading.Thread(target=stream_and_leave) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert [m["type"] for m in ended] == ["ended"] * 12
    time.sleep(1.0)  # the server's side of the last closes
    log = server.log()[logged_before:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
