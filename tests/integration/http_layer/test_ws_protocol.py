"""``/v1/stream`` as docs/websocket.md states it: config and ``ready``, frames answered in order
with their ids and timestamps, acks and their window, JSON errors that leave the stream going, and
the close codes. The fake node's feed answers each frame at once (one pose per given box)."""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from tdmi.protocol.stream import pack_frame
from tests.helpers.in_process import STREAM_URL, StartApp, TestClient, receive_until, until_closed

WIDTH, HEIGHT = 64, 48
BOX = [8.0, 6.0, 40.0, 44.0]
CPU_SECONDS = "tdmi_stage_cpu_seconds_total"


def _jpeg(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def _send(ws: Any, message: dict[str, Any]) -> None:
    ws.send_text(json.dumps(message))


def _config(ws: Any, **fields: Any) -> dict[str, Any]:
    _send(ws, {"type": "config", **fields})
    return receive_until(ws, "ready")[-1]


def _closed(ws: Any) -> tuple[list[dict[str, Any]], int]:
    """Messages until the server closes, and its code."""
    seen: list[dict[str, Any]] = []
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            seen.append(ws.receive_json())
    return seen, closed.value.code


def test_frames_are_answered_in_order_with_their_ids_and_timestamps(client: TestClient) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        ready = _config(ws, detector="client", lookahead=1, ack_window=64)
        assert (ready["model"], ready["lookahead"], ready["ack_window"]) == ("tdmi-tiny", 1, 64)
        assert ready["joints"][2] == "head_top" and len(ready["joints"]) == 17
        for i in range(6):
            _send(ws, {"type": "boxes", "frame_id": 1000 + i, "boxes": [BOX] * (i % 3)})
            ws.send_bytes(pack_frame(_jpeg(), 1000 + i, 12.5 + i / 25))
        _send(ws, {"type": "end"})
        messages, code = _closed(ws)
    results = [m for m in messages if m["type"] == "result"]
    assert [m["frame_id"] for m in results] == [1000 + i for i in range(6)]
    assert [m["timestamp"] for m in results] == pytest.approx([12.5 + i / 25 for i in range(6)])
    assert [len(m["persons"]) for m in results] == [i % 3 for i in range(6)]
    assert results[1]["persons"][0]["box"] == pytest.approx(BOX)
    assert all(m["latency_ms"] >= 0 for m in results)
    assert messages[-1] == {"type": "ended", "frames": 6, "dropped": 0} and code == 1000


def test_a_frame_without_config_or_header_gets_the_defaults_and_the_next_id(client: TestClient) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        ws.send_bytes(_jpeg())  # no config: the defaults; no header: numbered from 0
        ready, first = receive_until(ws, "result")
        assert ready["type"] == "ready" and ready["lookahead"] == 2  # tdmi-tiny's d
        assert first["frame_id"] == 0 and first["timestamp"] is None
        assert len(first["persons"]) == 1  # the fake detector's one person: no boxes were sent
        ws.send_bytes(pack_frame(_jpeg(), 41, 1.0))
        ws.send_bytes(_jpeg())
        assert [m["frame_id"] for m in receive_until(ws, "result") + receive_until(ws, "result")] == [41, 42]


def test_a_frame_before_a_required_config_is_refused(start_app: StartApp) -> None:
    client, _ = start_app(require_config=True)
    with client.websocket_connect(STREAM_URL) as ws:
        ws.send_bytes(pack_frame(_jpeg(), 7, 0.0))
        error = ws.receive_json()
        assert (error["error"], error["frame_id"]) == ("config_required", 7)
        assert _config(ws, lookahead=0)["type"] == "ready"
        ws.send_bytes(pack_frame(_jpeg(), 8, 0.0))
        assert receive_until(ws, "result")[-1]["frame_id"] == 8


def test_bad_messages_get_json_errors_and_the_stream_goes_on(client: TestClient) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        for text, kind in [
            ("{this is not json", "invalid_json"),
            (json.dumps({"type": "config", "lookahead": "soon"}), "invalid_message"),
            (json.dumps({"type": "teleport"}), "invalid_message"),
            (json.dumps({"type": "config", "model": "nope"}), "invalid_config"),
            (json.dumps({"type": "config", "lookahead": 3}), "invalid_config"),  # beyond tdmi-tiny's d
        ]:
            ws.send_text(text)
            error = ws.receive_json()
            assert (error["type"], error["error"]) == ("error", kind), text
            assert isinstance(error["detail"], str) and len(error["detail"]) < 300
        assert _config(ws, lookahead=0, detector="client")["type"] == "ready"
        _send(ws, {"type": "config"})
        assert ws.receive_json()["error"] == "invalid_message"  # config comes once, before frames
        ws.send_bytes(pack_frame(_jpeg()[:200], 1, 0.0))  # a JPEG cut short
        assert (error := ws.receive_json())["error"] == "corrupt" and error["frame_id"] == 1
        ws.send_bytes(pack_frame(b"GIF89a" + bytes(40), 2, 0.0))
        assert (error := ws.receive_json())["error"] == "unsupported_media" and error["frame_id"] == 2
        _send(ws, {"type": "boxes", "frame_id": 3, "boxes": [[1, 2, 3]]})
        ws.send_bytes(pack_frame(_jpeg(), 3, 0.0))
        assert (error := ws.receive_json())["error"] == "invalid_boxes" and error["frame_id"] == 3
        result = ws.receive_json()  # a frame whose boxes were refused is still answered: nobody
        assert (result["type"], result["frame_id"], result["persons"]) == ("result", 3, [])
        _send(ws, {"type": "boxes", "frame_id": 4, "boxes": [BOX]})
        ws.send_bytes(pack_frame(_jpeg(), 4, 0.0))
        assert len(receive_until(ws, "result")[-1]["persons"]) == 1
    metrics = client.get("/metrics").text
    assert 'tdmi_errors_total{kind="ws_invalid_json"} 1.0' in metrics
    assert 'tdmi_errors_total{kind="ws_corrupt"} 1.0' in metrics


BAD_TEXTS = [
    ('{"type": "ack", "frame_id": ' + "9" * 5000 + "}", "invalid_json"),
    ('{"type": "boxes", "boxes": ' + "[" * 50_000 + "]" * 50_000 + "}", "invalid_json"),
    ("[" * 50_000, "invalid_json"),
    ('{"type": "ack", "frame_id": "²"}', "invalid_message"),
    ('{"type": "ack", "frame_id": -1}', "invalid_message"),
    ('{"type": "ack", "frame_id": 1e400}', "invalid_message"),
    ('{"type": "boxes", "boxes": [[0, 0, 10, 10]], "frame_id": ' + "1" * 30 + "}", "invalid_message"),
    ('{"type": "warp"}', "invalid_message"),
    ("not json at all", "invalid_json"),
]


def test_hostile_text_is_an_error_of_bounded_size(client: TestClient) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        _config(ws, detector="client", lookahead=0)
        for text, kind in BAD_TEXTS:
            ws.send_text(text)
            error = ws.receive_json()
            assert error["error"] == kind, (text[:60], error)
            assert len(error["detail"]) < 300
        _send(ws, {"type": "boxes", "boxes": [[0, 0, 32, 32]]})
        ws.send_bytes(_jpeg())
        assert len(receive_until(ws, "result")[-1]["persons"]) == 1  # the stream went on


@pytest.mark.parametrize(
    "config",
    [{"ack_window": 1_000_000}, {"ack_window": 0}, {"detect_every": 10**9}, {"model": "m" * 1000}],
    ids=["ack_window above 1024", "ack_window 0", "detect_every huge", "model name too long"],
)
def test_config_values_are_bounded(client: TestClient, config: dict[str, Any]) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        _send(ws, {"type": "config", **config})
        assert ws.receive_json()["error"] == "invalid_message"
        assert _config(ws, ack_window=1024)["ack_window"] == 1024  # the bound itself is fine


@pytest.mark.parametrize(
    "config",
    [
        {"smoothing": "kalman"},
        {"smoothing": "one_euro", "smoothing_min_cutoff": 0},
        {"smoothing_min_cutoff": 1000},
        {"smoothing_beta": -0.1},
    ],
    ids=["unknown filter", "cutoff 0", "cutoff above 100 Hz", "negative beta"],
)
def test_smoothing_in_the_config_is_accepted_within_its_bounds(
    client: TestClient, config: dict[str, Any]
) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        _send(ws, {"type": "config", **config})
        error = ws.receive_json()
        assert error["error"] == "invalid_message" and error["detail"].startswith("config.smoothing")
        ready = _config(ws, smoothing="one_euro", smoothing_min_cutoff=2.5, smoothing_beta=0.05)
        assert ready["type"] == "ready"


def test_too_many_bad_messages_close_the_stream_with_4000(client: TestClient) -> None:
    with client.websocket_connect(STREAM_URL) as ws:
        for _ in range(21):
            ws.send_text("not json")
        messages, code = _closed(ws)
    assert code == 4000 and len(messages) == 21 and {m["error"] for m in messages} == {"invalid_json"}


def test_a_silent_stream_is_closed_with_4000(start_app: StartApp) -> None:
    client, _ = start_app(ws_idle_timeout_s=0.3)
    (error,), code = until_closed(client)
    assert code == 4000 and error["error"] == "idle_timeout"


def test_acks_open_the_window_and_a_full_window_closes_with_4008(start_app: StartApp) -> None:
    client, _ = start_app(ack_timeout_s=0.5)
    with client.websocket_connect(STREAM_URL) as ws:  # acknowledged: every frame is answered
        _config(ws, lookahead=0, ack_window=2)
        for i in range(8):
            ws.send_bytes(pack_frame(_jpeg(), i, 0.0))
        for i in range(8):
            assert ws.receive_json()["frame_id"] == i
            _send(ws, {"type": "ack", "frame_id": i})
    with client.websocket_connect(STREAM_URL) as ws:  # never acknowledged: two, then closed
        _config(ws, lookahead=0, ack_window=2)
        for i in range(3):
            ws.send_bytes(pack_frame(_jpeg(), i, 0.0))
        messages, code = _closed(ws)
    assert [m.get("frame_id") for m in messages[:2]] == [0, 1]
    assert messages[-1]["error"] == "client_behind" and code == 4008


def test_a_client_far_behind_is_closed_with_4008(start_app: StartApp) -> None:
    """With a window of 1 and no acks, twice 2 x 1 frames waiting for their answer close the stream."""
    client, _ = start_app()
    with client.websocket_connect(STREAM_URL) as ws:
        _config(ws, lookahead=0, ack_window=1)
        for i in range(6):
            ws.send_bytes(pack_frame(_jpeg(), i, 0.0))
        messages, code = _closed(ws)
    assert messages[0]["frame_id"] == 0 and messages[-1]["error"] == "client_behind" and code == 4008


def test_frames_beyond_the_rate_are_dropped_in_their_place(start_app: StartApp) -> None:
    client, _ = start_app(max_fps=1)
    with client.websocket_connect(STREAM_URL) as ws:
        _config(ws, lookahead=0, ack_window=64)
        for i in range(10):
            ws.send_bytes(pack_frame(_jpeg(), i, 0.0))
        _send(ws, {"type": "end"})
        messages, code = _closed(ws)
    answers = [m for m in messages if m["type"] in ("result", "dropped")]
    assert [m["frame_id"] for m in answers] == list(range(10)) and code == 1000  # each once, in order
    dropped = [m for m in answers if m["type"] == "dropped"]
    assert dropped and all(m["reason"].startswith("rate: more than 1 frames per second") for m in dropped)
    assert messages[-1] == {"type": "ended", "frames": 10, "dropped": len(dropped)}


def test_a_frame_above_the_pixel_limit_is_refused(start_app: StartApp) -> None:
    client, _ = start_app(max_frame_pixels=WIDTH * HEIGHT)
    with client.websocket_connect(STREAM_URL) as ws:
        ws.send_bytes(pack_frame(_jpeg(WIDTH * 2, HEIGHT), 5, 0.0))
        error = receive_until(ws, "error")[-1]
        assert (error["error"], error["frame_id"]) == ("too_large", 5)


def test_streams_beyond_the_limit_are_closed_with_4029(start_app: StartApp) -> None:
    client, _ = start_app(max_streams=1)
    with client.websocket_connect(STREAM_URL) as first:
        _config(first)
        (error,), code = until_closed(client)
        assert code == 4029 and error["error"] == "too_many_streams"
    with client.websocket_connect(STREAM_URL) as again:  # the slot is free once the first has left
        assert _config(again)["type"] == "ready"


def test_the_websockets_own_stages_count_their_cpu_time(start_app: StartApp) -> None:
    """Receive (the message parsed), encode (the result as JSON) and send: the event loop's work
    that ``tdmi_stage_cpu_seconds_total`` splits out of its thread's CPU time."""
    client, node = start_app()
    stages = ("receive", "encode", "send")

    def cpu() -> list[float]:
        return [node.metrics.registry.get_sample_value(CPU_SECONDS, {"stage": s}) or 0.0 for s in stages]

    before = cpu()
    with client.websocket_connect(STREAM_URL) as ws:
        _config(ws, detector="client", lookahead=0, ack_window=64)
        for i in range(4):
            _send(ws, {"type": "boxes", "frame_id": i, "boxes": [BOX]})
            ws.send_bytes(pack_frame(_jpeg(), i, i / 25))
        _send(ws, {"type": "end"})
        messages, _ = _closed(ws)
    assert len([m for m in messages if m["type"] == "result"]) == 4
    assert all(after > first for after, first in zip(cpu(), before)), dict(zip(stages, cpu()))
