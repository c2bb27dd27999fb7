"""The camera reader against real cameras on loopback: GStreamer's RTSP server and an MJPEG
HTTP server, read with real PyAV (FFmpeg)."""

from __future__ import annotations

import contextlib
import http.server
import itertools
import logging
import socket
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import av.logging
import cv2
import numpy as np
import pytest

from tdmi.service.config import Settings
from tdmi.service.images import decode_image
from tdmi.service.sources.reader import CameraFrame, CameraReader, ReaderState
from tdmi.service.sources.url_policy import check_source_url
from tests.helpers.cameras import CLIP, MjpegCamera, RtspCamera, connections_to
from tests.helpers.server import free_port
from tests.helpers.waits import until

PASSWORD = "pa:ss/w@rd-7731"  # characters a URL must escape
SETTINGS = Settings(source_allowed_networks=["127.0.0.0/8"], source_stall_s=1.0, source_connect_timeout_s=2.0)


class Recorder:
    """A reader with the states it reported, stopped at the end of the test."""

    def __init__(self, url: str, settings: Settings = SETTINGS):
        self.states: list[tuple[ReaderState, str | None]] = []
        self.reader = CameraReader(check_source_url(url, settings), settings, self._seen)
        self.reader.start()

    def _seen(self, state: ReaderState, error: str | None) -> None:
        self.states.append((state, error))

    def frames(self, count: int, every_s: float = 0.0, after: int = 0) -> list[CameraFrame]:
        taken: list[CameraFrame] = []
        while len(taken) < count:
            frame = self.reader.next_frame(after=taken[-1].seq if taken else after, timeout=30)
            assert frame is not None, f"no frame; states {self.states}"
            taken.append(frame)
            time.sleep(every_s)
        return taken

    def reaches(self, state: ReaderState, timeout: float = 30) -> None:
        until(lambda: self.reader.stats().state == state, f"{state} not reached: {self.states}", timeout)


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.reader.stop()


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspCamera]:
    with RtspCamera(fps=10, user="viewer", password=PASSWORD) as running:
        yield running


def test_an_rtsp_camera_goes_live_with_frames_in_order_and_wall_clock_times(
    camera: RtspCamera, recorders: list[Recorder]
) -> None:
    started = time.time()
    recorders.append(recorder := Recorder(camera.url))
    frames = recorder.frames(12)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1
    assert all(f.image.shape == (256, 384, 3) and f.image.dtype == np.uint8 for f in frames)
    times = [f.captured_at for f in frames]
    assert started - 1 <= times[0] and times == sorted(times) and times[-1] <= time.time()
    stats = recorder.reader.stats()
    assert (stats.state, stats.width, stats.height, stats.reconnects) == (ReaderState.LIVE, 384, 256, 0)
    assert stats.camera_fps == pytest.approx(10, rel=0.05)  # from the stream's pts
    assert stats.live_since is not None and started <= stats.live_since <= time.time()
    assert recorder.states[0] == (ReaderState.LIVE, None)


def test_a_slow_consumer_skips_frames_and_they_are_counted(
    camera: RtspCamera, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(camera.url))
    first = recorder.frames(1)[0]
    taken = recorder.frames(5, every_s=0.3, after=first.seq)  # a third of the camera's 10 fps
    stats = recorder.reader.stats()
    assert stats.frames_skipped >= 3
    assert all(b.seq > a.seq for a, b in itertools.pairwise([first, *taken]))
    # every frame read was taken, skipped, or is the one waiting (or about to wait) in the slot
    assert stats.frames_read - stats.frames_skipped - 6 in (0, 1, 2)


def test_stop_leaves_no_thread_and_no_socket_behind(camera: RtspCamera) -> None:
    recorder = Recorder(camera.url)
    recorder.frames(2)
    names = {t.name for t in threading.enumerate()}
    assert any(name.startswith("tdmi-source-") for name in names) and connections_to(camera.port) == 1
    started = time.monotonic()
    recorder.reader.stop()
    assert time.monotonic() - started < 5
    assert not [t.name for t in threading.enumerate() if t.name.startswith("tdmi-source-")]
    assert connections_to(camera.port) == 0
    assert recorder.reader.stats().state == ReaderState.STOPPED
    assert recorder.reader.next_frame(after=0, timeout=1) is None
    recorder.reader.stop()  # again: nothing happens
    assert recorder.states[-1] == (ReaderState.STOPPED, None)


def test_credentials_never_reach_the_log_the_stats_or_the_url_shown(
    camera: RtspCamera, recorders: list[Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    av.logging.set_level(av.logging.DEBUG)  # someone turned FFmpeg's lines on: the reader turns them off
    try:
        recorders.append(live := Recorder(camera.url))
        live.frames(3)
        assert av.logging.get_level() is None
        recorders.append(wrong := Recorder(camera.url.replace("pa%3Ass", "nope")))
        wrong.reaches(ReaderState.RECONNECTING)
    finally:
        av.logging.set_level(None)
    assert wrong.reader.stats().last_error == "the camera refused the credentials (401)"
    logging.getLogger("tdmi.test").info("sources %s and %r", live.reader._url, wrong.reader._url)
    seen = caplog.text + repr(live.reader.stats()) + repr(wrong.reader.stats()) + repr(wrong.states)
    assert "refused the credentials" in caplog.text and "/cam" in caplog.text
    assert "pa%3Ass" not in seen and "pa:ss" not in seen and "viewer:" not in seen and PASSWORD not in seen
    assert not [r for r in caplog.records if r.name.startswith("libav")]


def test_a_closed_port_reconnects_with_a_clear_message_and_no_traceback(
    recorders: list[Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorders.append(recorder := Recorder(f"rtsp://127.0.0.1:{free_port()}/cam"))
    recorder.reaches(ReaderState.RECONNECTING)
    message = "the camera refused the connection (nothing listens on that port)"
    assert recorder.reader.stats().last_error == message
    assert recorder.states[0] == (ReaderState.RECONNECTING, message)
    time.sleep(1.0)  # a few more attempts: still one line for the outage
    lines = [r for r in caplog.records if r.name == "tdmi.sources"]
    assert len(lines) == 1 and message in lines[0].getMessage() and lines[0].levelno == logging.WARNING
    assert all(r.exc_info is None for r in caplog.records) and "Traceback" not in caplog.text


def test_a_silent_camera_is_reported_as_not_answering(recorders: list[Recorder]) -> None:
    """A port that accepts the connection and never says a word: the open gives up in time."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        settings = SETTINGS.model_copy(update={"source_connect_timeout_s": 0.5})
        recorders.append(recorder := Recorder(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam", settings))
        recorder.reaches(ReaderState.RECONNECTING)
        assert recorder.reader.stats().last_error == "no answer from the camera within 0.5 s"


def test_a_host_that_never_answers_the_connection_is_told_from_one_that_refuses(
    recorders: list[Recorder],
) -> None:
    """A listener whose accept queue is full drops new SYNs, as an unroutable address does: the
    TCP connect itself times out (not the wait for an answer after it)."""
    with socket.socket() as full, contextlib.ExitStack() as queued:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        for _ in range(4):  # enough to fill the queue of a listen(0) socket
            waiting = queued.enter_context(socket.socket())
            waiting.setblocking(False)
            waiting.connect_ex(("127.0.0.1", port))
        with socket.socket() as probe, pytest.raises(TimeoutError):  # the SYNs are dropped now
            probe.settimeout(0.3)
            probe.connect(("127.0.0.1", port))
        settings = SETTINGS.model_copy(update={"source_connect_timeout_s": 0.5})
        recorders.append(recorder := Recorder(f"rtsp://127.0.0.1:{port}/cam", settings))
        recorder.reaches(ReaderState.RECONNECTING)
        assert recorder.reader.stats().last_error == "no answer from the camera within 0.5 s"


def test_a_port_that_hangs_up_at_once_is_not_taken_for_a_timeout(recorders: list[Recorder]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as rude:
        hanging_up = threading.Thread(target=_hang_up, args=(rude,), daemon=True)
        hanging_up.start()
        recorders.append(recorder := Recorder(f"rtsp://127.0.0.1:{rude.getsockname()[1]}/cam"))
        recorder.reaches(ReaderState.RECONNECTING)
        error = recorder.reader.stats().last_error
    assert error is not None and error.startswith("the camera closed the connection at once or answered")


def _hang_up(server: socket.socket) -> None:
    """Accept connections and close them without a word, until the server socket closes."""
    with contextlib.suppress(OSError):
        while True:
            client, _ = server.accept()
            client.close()


@pytest.mark.slow
@pytest.mark.camera
def test_a_camera_killed_and_restarted_comes_back_by_itself(recorders: list[Recorder]) -> None:
    with RtspCamera(fps=10) as own:
        recorders.append(recorder := Recorder(own.url))
        before = recorder.frames(3)[-1]
        own.kill()
        recorder.reaches(ReaderState.RECONNECTING)
        own.start()  # the same port
        recorder.reaches(ReaderState.LIVE)
        after = recorder.reader.next_frame(after=before.seq, timeout=30)
        states = [state for state, _ in recorder.states]  # once per message: ended, refused, ...
        reconnects = recorder.reader.stats().reconnects
    assert after is not None and after.seq > before.seq
    assert states[0] == ReaderState.LIVE and set(states[1:-1]) == {ReaderState.RECONNECTING}, states
    assert states[-1] == ReaderState.LIVE and reconnects == 1


@pytest.mark.slow
@pytest.mark.camera
def test_a_frozen_camera_stalls_and_comes_back_when_it_thaws(recorders: list[Recorder]) -> None:
    with RtspCamera(fps=10) as own:
        recorders.append(recorder := Recorder(own.url))
        recorder.frames(2)
        own.pause()  # connections stay open, nothing flows
        try:
            recorder.reaches(ReaderState.RECONNECTING)
        finally:
            own.resume()
        assert recorder.states[1] == (ReaderState.RECONNECTING, "no frame from the camera for 1 s")
        recorder.reaches(ReaderState.LIVE)


def test_mjpeg_over_http_gives_frames_in_the_live_paths_channel_order(recorders: list[Recorder]) -> None:
    """Red, green and blue stripes: the reader's pixels must match what the live path decodes
    from the same JPEG (RGB), channel for channel."""
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:32, :, 0], stripes[32:64, :, 1], stripes[64:, :, 2] = 255, 255, 255  # RGB
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(stripes, cv2.COLOR_RGB2BGR))[1].tobytes()
    with MjpegCamera(fps=20, jpegs=[jpeg]) as mjpeg:
        recorders.append(
            recorder := Recorder(mjpeg.url.replace("http://", "http://u:secret-1@") + "?token=t0k")
        )
        frame = recorder.frames(25)[-1]  # past the burst FFmpeg read while probing
        stats = recorder.reader.stats()
        recorder.reader.stop()
        assert connections_to(int(mjpeg.url.split(":")[2].split("/")[0])) == 0
    expected = decode_image(jpeg)
    assert frame.image.shape == expected.shape == (96, 96, 3)
    assert np.abs(frame.image.astype(int) - expected).mean() < 3
    assert frame.image[10, 48, 0] > 200 and frame.image[80, 48, 2] > 200  # red on top, blue below
    assert frame.pts_s is None  # MJPEG has no timestamps: arrival times
    assert stats.camera_fps == pytest.approx(20, rel=0.3) and (stats.width, stats.height) == (96, 96)
    assert "secret-1" not in repr(stats) and "t0k" not in str(recorder.reader._url)


def test_frames_larger_than_the_job_limit_fail_the_source_for_good(
    camera: RtspCamera, recorders: list[Recorder]
) -> None:
    settings = SETTINGS.model_copy(update={"max_video_pixels": 320 * 240})
    recorders.append(recorder := Recorder(camera.url, settings))
    recorder.reaches(ReaderState.FAILED)
    error = "the camera sends 384x256 frames, more than the 76800 pixels allowed (TDMI_MAX_VIDEO_PIXELS)"
    assert recorder.states == [(ReaderState.FAILED, error)]
    assert recorder.reader.stats().reconnects == 0 and recorder.reader.stats().frames_read == 0


def test_a_source_without_video_fails_for_good(tmp_path: Path, recorders: list[Recorder]) -> None:
    sound = tmp_path / "tone.wav"
    with wave.open(str(sound), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(8000, np.int16).tobytes())
    settings = SETTINGS.model_copy(update={"source_allow_files": True})
    recorders.append(recorder := Recorder(str(sound), settings))
    recorder.reaches(ReaderState.FAILED)
    assert recorder.states == [(ReaderState.FAILED, "the source has no video stream")]


def test_a_file_plays_at_its_own_pace_and_loops_like_a_camera(recorders: list[Recorder]) -> None:
    settings = SETTINGS.model_copy(update={"source_allow_files": True})
    started = time.monotonic()
    recorders.append(recorder := Recorder(str(CLIP), settings))  # 16 frames at 10 fps: 1.6 s
    frames = recorder.frames(20)
    elapsed = time.monotonic() - started
    pts = [f.pts_s for f in frames]
    assert all(p is not None and 0 <= p <= 1.5 for p in pts)
    loop = next(i for i in range(1, len(pts)) if pts[i] < pts[i - 1])  # the file began again
    for part in (frames[:loop], frames[loop:]):  # within a pass, the file's own clock
        offsets = [f.captured_at - f.pts_s for f in part]  # type: ignore[operator]
        assert offsets == pytest.approx([offsets[0]] * len(part), abs=1e-3)
    stats = recorder.reader.stats()
    assert stats.frames_read <= elapsed * 10 + 2  # read no faster than it plays (unpaced: hundreds)
    assert (stats.state, stats.reconnects) == (ReaderState.LIVE, 0)


def test_a_redirect_is_not_followed_past_the_checked_host(recorders: list[Recorder]) -> None:
    """The policy checked the URL's host; a 302 to anywhere else (here another port, standing in
    for 169.254.169.254) must not be fetched."""
    with MjpegCamera(fps=10) as target:
        hits_before = target.requests

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target.url)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect) as redirect:
            threading.Thread(target=redirect.serve_forever, daemon=True).start()
            recorders.append(recorder := Recorder(f"http://127.0.0.1:{redirect.server_address[1]}/cam"))
            recorder.reaches(ReaderState.RECONNECTING)
            recorder.reader.stop()
            redirect.shutdown()
        assert target.requests == hits_before == 0
        assert recorder.reader.stats().frames_read == 0
