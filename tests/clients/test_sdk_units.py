"""The SDK's pieces without a pose server: the stream engine against a scripted WebSocket peer
(acks, the ``resumed`` message, reconnection after 1012), request building and error mapping,
sources, the sync bridge, the video writer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tdmi.client import calls
from tdmi.client.bridge import iterate_in_thread
from tdmi.client.errors import AuthError, BadRequest, ServerError, SourceError
from tdmi.client.events import (
    FrameDropped,
    FrameResult,
    Reconnecting,
    StreamEnded,
    StreamResumed,
    StreamStarted,
    parse_server_message,
)
from tdmi.client.render import VideoFileWriter
from tdmi.client.sources import FrameSource, open_source
from tdmi.client.streaming import StreamOptions, stream_events
from tdmi.protocol.backoff import BackoffSchedule
from tdmi.protocol.stream import ReadyMessage, ResumedMessage, unpack_frame
from tests.clients.conftest import SynthVideo

IMAGES = [np.full((32, 48, 3), 10 * i, dtype=np.uint8) for i in range(6)]


class ScriptedPeer:
    """A WebSocket server speaking the stream protocol from a script, recording what it hears.

    Connection 1 answers frames 0 and 1, drops frame 2 (``dropped``), announces ``resumed`` after
    it, then closes with 1012 on frame 3 without answering it. Connection 2 answers the rest."""

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.frames: list[tuple[int, int, float]] = []  # (connection, frame id, timestamp)
        self.connections = 0

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        connection = self.connections
        config = json.loads(await ws.recv())
        assert config["type"] == "config" and config["lookahead"] == 0
        ready = ReadyMessage(stream_id=f"s{connection}", model="m", lookahead=0, ack_window=4, joints=["a"])
        await ws.send(ready.model_dump_json())
        async for message in ws:
            if isinstance(message, str):
                control = json.loads(message)
                if control["type"] == "ack":
                    self.acks.append(control["frame_id"])
                elif control["type"] == "end":
                    await ws.send(json.dumps({"type": "ended", "frames": 2, "dropped": 0}))
                    await ws.close(1000)
                continue
            _, frame_id, timestamp = unpack_frame(message)
            assert frame_id is not None and timestamp is not None
            self.frames.append((connection, frame_id, timestamp))
            if connection == 1 and frame_id == 3:
                await ws.close(1012, "server shutting down")
                return
            if connection == 1 and frame_id == 2:
                await ws.send(json.dumps({"type": "dropped", "frame_id": 2, "reason": "stale: test"}))
                resumed = ResumedMessage(stream_id="s1", next_frame_id=3, reason="worker died")
                await ws.send(resumed.model_dump_json())
                continue
            person = {"track_id": 1, "box": [1, 2, 3, 4], "box_score": 1.0, "keypoints": [[1, 2, 0.9]]}
            result = {"type": "result", "frame_id": frame_id, "timestamp": timestamp, "persons": [person],
                      "latency_ms": 1.0}  # fmt: skip
            await ws.send(json.dumps(result))


def test_the_engine_acks_surfaces_resumed_and_reconnects_after_1012() -> None:
    peer = ScriptedPeer()

    async def run() -> list[object]:
        async with serve(peer.handle, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            source = open_source(iter(IMAGES))
            options = StreamOptions(lookahead=0, max_in_flight=1, backoff_s=0.05)
            return [e async for e in stream_events(f"ws://127.0.0.1:{port}/", {}, source, options)]

    events = asyncio.run(run())
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "StreamStarted", "FrameResult", "FrameResult", "FrameDropped", "StreamResumed", "Reconnecting",
        "StreamStarted", "FrameResult", "FrameResult", "StreamEnded",
    ]  # fmt: skip
    started = [e for e in events if isinstance(e, StreamStarted)]
    assert [s.ready.stream_id for s in started] == ["s1", "s2"]
    resumed = next(e for e in events if isinstance(e, StreamResumed))
    assert resumed.message.next_frame_id == 3 and resumed.message.reason == "worker died"
    reconnecting = next(e for e in events if isinstance(e, Reconnecting))
    assert reconnecting.code == 1012 and reconnecting.lost == (3,) and reconnecting.attempt == 1
    # frame ids run on across the reconnection; frame 3's answer is lost
    answered = [e.frame_id for e in events if isinstance(e, FrameResult | FrameDropped)]
    assert answered == [0, 1, 2, 4, 5]
    assert peer.acks == [0, 1, 2, 4, 5]  # every answer acknowledged
    assert [c for c, _, _ in peer.frames] == [1, 1, 1, 1, 2, 2]
    result = next(e for e in events if isinstance(e, FrameResult))
    assert result.image is not None and result.image.shape == (32, 48, 3)
    assert isinstance(events[-1], StreamEnded)


def test_server_messages_parse_to_their_protocol_models() -> None:
    text = '{"type": "resumed", "stream_id": "ab", "next_frame_id": 7, "reason": "x"}'
    resumed = parse_server_message(text)
    assert isinstance(resumed, ResumedMessage) and resumed.next_frame_id == 7
    with pytest.raises(ValueError):
        parse_server_message('{"type": "teleported"}')


def test_backoff_doubles_is_capped_and_starts_over_after_a_success() -> None:
    backoff = BackoffSchedule(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.next_delay() == 0.5 and backoff.failures == 1


def test_in_flight_limit_leaves_room_for_lookahead_and_the_servers_rule() -> None:
    ready = ReadyMessage(stream_id="s", model="m", lookahead=2, ack_window=4, joints=[])
    assert StreamOptions().in_flight_limit(ready) == 6
    assert StreamOptions(max_in_flight=1).in_flight_limit(ready) == 3  # or frame t never gets answered
    assert StreamOptions(max_in_flight=100).in_flight_limit(ready) == 10  # 2 x ack_window + lookahead


def test_ws_url_and_auth_headers() -> None:
    assert calls.ws_url("http://h:8000/") == "ws://h:8000/v1/stream"
    assert calls.ws_url("https://h/prefix") == "wss://h/prefix/v1/stream"
    with pytest.raises(ValueError, match="http"):
        calls.ws_url("ftp://h")
    assert calls.auth_headers("k") == {"Authorization": "Bearer k"} and calls.auth_headers(None) == {}


@pytest.mark.parametrize(
    ("status", "body", "error", "kind"),
    [
        (401, {"error": "unauthorised", "detail": "missing or wrong API key"}, AuthError, "unauthorised"),
        (415, {"error": "unsupported_media", "detail": "not a video"}, BadRequest, "unsupported_media"),
        (503, {"error": "not_ready", "detail": "loading models"}, ServerError, "not_ready"),
        (502, "<html>bad gateway</html>", ServerError, "http_error"),
    ],
)
def test_error_answers_become_exceptions_with_the_servers_message(
    status: int, body: object, error: type[ServerError], kind: str
) -> None:
    content = json.dumps(body).encode() if isinstance(body, dict) else str(body).encode()
    response = httpx.Response(status, content=content)
    with pytest.raises(error) as raised:
        calls.raise_for_error(response)
    assert type(raised.value) is error and raised.value.kind == kind and raised.value.status == status
    if isinstance(body, dict):
        assert raised.value.detail == body["detail"]


def test_submit_checks_the_file_and_encodes_the_options(synth_video: SynthVideo, tmp_path: Path) -> None:
    boxes = {"0": [[1.0, 2.0, 3.0, 4.0]]}
    call = calls.submit_job(synth_video.path, model="m", lookahead=1, render=True, boxes=boxes)
    assert call.data == {"render": "true", "model": "m", "lookahead": "1", "boxes": json.dumps(boxes)}
    assert call.upload == synth_video.path
    with pytest.raises(SourceError, match="no such file"):
        calls.submit_job(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="format"):
        calls.get_result("j", "xml")  # type: ignore[arg-type]


def test_a_sources_options_and_times_are_sent_as_the_server_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert calls.add_source("rtsp://h/s", record=True).json == {"url": "rtsp://h/s", "record": True}
    assert calls.add_source("rtsp://h/s").json == {"url": "rtsp://h/s"}  # the server's default

    monkeypatch.setenv("TZ", "America/New_York")  # a naive datetime is UTC, not this host's time
    time.tzset()
    try:
        naive = calls.source_results("a/b", datetime(2026, 1, 2, 3, 4, 5)).params
    finally:
        monkeypatch.undo()
        time.tzset()
    epoch = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert naive == {"from": repr(epoch), "format": "json"}
    aware = datetime(2026, 1, 2, 8, 4, 5, 250_000, tzinfo=timezone(timedelta(hours=5)))
    call = calls.source_results("a/b", 1.5, aware, "coco")
    assert call.path == "/v1/sources/a%2Fb/results"
    assert call.params == {"from": "1.5", "to": repr(epoch + 0.25), "format": "coco"}
    text = "2026-01-02T03:04:05Z"  # text goes as typed: the server reads it or answers 422
    assert calls.source_results("s", text, "12").params == {"from": text, "to": "12", "format": "json"}
    with pytest.raises(ValueError, match="format"):
        calls.source_results("s", 0, format="xml")  # type: ignore[arg-type]


def test_a_video_file_source_gives_rgb_frames_with_their_presentation_times(synth_video: SynthVideo) -> None:
    source = open_source(str(synth_video.path))
    frames = list(source)
    assert not source.live and len(frames) == synth_video.frames
    assert frames[0].image.shape == (synth_video.height, synth_video.width, 3)
    assert np.allclose([f.timestamp for f in frames], np.arange(synth_video.frames) / synth_video.fps)


def test_sources_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "nothing.mp4")
    with pytest.raises(SourceError, match="not a source"):
        open_source(True)  # type: ignore[arg-type]
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="not a readable video"):
        list(open_source(text))
    with pytest.raises(SourceError, match="RGB uint8"):
        list(open_source(iter([np.zeros((4, 4, 3), dtype=np.float32)])))
    live = open_source("rtsp://127.0.0.1:1/none")
    assert isinstance(live, FrameSource) and live.live
    with pytest.raises(SourceError, match="cannot open"):
        next(live)


def test_the_bridge_yields_raises_and_stops_the_engine_when_left_early() -> None:
    closed = threading.Event()

    async def numbers(fail_at: int | None) -> AsyncIterator[int]:
        try:
            for i in range(100):
                if i == fail_at:
                    raise RuntimeError("engine failed")
                yield i
                await asyncio.sleep(0)
        finally:
            closed.set()

    assert list(iterate_in_thread(lambda: numbers(None))) == list(range(100))
    with pytest.raises(RuntimeError, match="engine failed"):
        list(iterate_in_thread(lambda: numbers(3)))
    closed.clear()
    items: Iterator[int] = iterate_in_thread(lambda: numbers(None))
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # type: ignore[attr-defined]
    assert closed.is_set()  # the engine's cleanup ran before close() returned


def test_the_video_writer_writes_every_frame_at_the_first_frames_size(tmp_path: Path) -> None:
    writer = VideoFileWriter(tmp_path / "out.mp4", fps=10)
    for i in range(5):
        writer.write(np.full((48 + 2 * (i % 2), 64, 3), 40 * i, dtype=np.uint8))
    writer.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    assert abs(float(frames[3].mean()) - 120) < 3
