"""One camera read on a thread of its own: the newest frame always at hand, through drops and stalls.

The camera is opened with PyAV (FFmpeg): RTSP over TCP (no lost packets to smear frames), every
socket operation bounded by ``source_connect_timeout_s``, and FFmpeg's probing kept short, so a
stream is live a fraction of a second after it connects instead of seconds of frames later.

- Only the newest frame is kept (a one-slot mailbox): a consumer slower than the camera skips
  frames, counted, instead of falling behind it.
- A frame's ``captured_at`` is its pts mapped to wall-clock time. The offset is set by the first
  frame of each connection and lowered by any frame that arrives sooner after its pts (the first
  frames may have waited in a buffer); a pts that goes back or falls far behind starts it over.
  A file (``source_allow_files``) is played at its own pace, and read again from the start when
  it ends, as a camera that loops it.
- Network faults, a stream that ends and a camera that sends no frame for ``source_stall_s``
  put the reader in ``reconnecting``; it tries again with the shared backoff, forever, until
  stopped. Before each connection the URL is checked again (a name may resolve elsewhere now).
- What retrying cannot mend fails the source for good: a URL no longer allowed, a stream with
  no video, frames larger than the job limit (``max_video_pixels``).
- FFmpeg's log lines can hold the URL with its password: FFmpeg's logging stays off (PyAV's
  default, asserted at start), and the messages kept from its errors are rebuilt from their
  kind (``faults``: timeouts, refusals, unreachable hosts and unreadable streams told apart),
  never from the exception, which names the URL.

``stop`` waits at most its timeout. FFmpeg offers no safe way to cut a read blocked in another
thread (closing the container under it frees what it reads), so a blocked read ends by its own
bound: ``source_stall_s`` while streaming, ``source_connect_timeout_s`` while connecting; a live
camera's reader sees the stop at its next packet.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import av
import av.format
import av.logging
import numpy as np

from tdmi.service.backoff import Backoff
from tdmi.service.config import Settings
from tdmi.service.sources.faults import Attempt, connection_error
from tdmi.service.sources.url_policy import CheckedUrl, SourceRefused, check_source_url

__all__ = ["CameraFrame", "CameraReader", "ReaderState", "ReaderStats"]

log = logging.getLogger("tdmi.sources")

# how far back a frame's mapped time may fall behind its arrival before the clock starts over
CLOCK_RESYNC_S = 1.0
FPS_WINDOW = 30  # frames the camera's rate is measured over
PROBE_BURST_GAP_S = 0.005  # frames read while probing come closer together than this
_NO_TIMESTAMPS = cast(int, av.format.Flags.no_timestamps.value)  # AVFMT_NOTIMESTAMPS (the stub says Flags)
# what FFmpeg may open for each kind of URL (an HLS playlist cannot send it to file:// or udp)
_PROTOCOLS = {
    "rtsp": "tcp,rtp,udp",
    "rtsps": "tcp,tls,rtp,udp",
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
    "file": "file",
}


class ReaderState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class CameraFrame:
    seq: int  # 1, 2, ... per reader, increasing across reconnects
    image: np.ndarray  # H x W x 3 uint8 RGB, as tdmi.service.images decodes a pushed frame
    captured_at: float  # wall-clock seconds (time.time()) the frame's pts maps to
    pts_s: float | None


@dataclass(frozen=True)
class ReaderStats:
    state: ReaderState
    frames_read: int
    frames_skipped: int  # overwritten in the mailbox before anyone took them
    camera_fps: float | None
    width: int | None
    height: int | None
    live_since: float | None  # wall-clock seconds of the current connection's first frame
    reconnects: int
    last_error: str | None  # public: no URL, no credentials


class SourceFailed(Exception):
    """What retrying cannot mend; the message is public."""


class _Reconnect(Exception):
    """A fault of the connection (the message is public): connect again after the backoff."""


class _Mailbox:
    """One slot holding the newest frame; a frame replaced before anyone took it is skipped."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._frame: CameraFrame | None = None
        self._taken = 0  # the newest seq handed out
        self._closed = False
        self.skipped = 0

    def put(self, frame: CameraFrame) -> None:
        with self._changed:
            if self._closed:  # a read that outlived stop()
                return
            if self._frame is not None and self._frame.seq > self._taken:
                self.skipped += 1
            self._frame = frame
            self._changed.notify_all()

    def take(self, after: int, timeout: float) -> CameraFrame | None:
        with self._changed:
            ready = self._changed.wait_for(
                lambda: self._closed or (self._frame is not None and self._frame.seq > after), timeout
            )
            if not ready or self._closed or self._frame is None:
                return None
            self._taken = max(self._taken, self._frame.seq)
            return self._frame

    def close(self) -> None:
        """Wake every waiter with None and let the frame go."""
        with self._changed:
            self._closed, self._frame = True, None
            self._changed.notify_all()


class _StreamClock:
    """One connection's time: its pts mapped to wall-clock time (module docstring) and the
    camera's frame rate, from the pts, or from arrivals for a format without timestamps (after
    the burst of frames FFmpeg read while probing: they arrive together whatever their rate).

    ``paced``: a file, which could be read far faster than it plays; the offset is fixed at its
    first frame and the reader holds each frame until the time its pts maps to."""

    def __init__(self, timed: bool, paced: bool = False):
        self.timed, self.paced = timed, paced
        self._offset: float | None = None
        self._last_pts = 0.0
        self._last_arrival: float | None = None
        self._burst_over = False
        self._rate_times: deque[float] = deque(maxlen=FPS_WINDOW)

    def captured_at(self, pts_s: float | None, now: float) -> float:
        self._count_for_rate(pts_s, now)
        if pts_s is None:
            return now
        behind = now - pts_s
        if self._offset is None or pts_s < self._last_pts:
            self._offset = behind
        elif not self.paced:
            self._offset = behind if behind - self._offset > CLOCK_RESYNC_S else min(self._offset, behind)
        self._last_pts = pts_s
        return pts_s + self._offset

    def _count_for_rate(self, pts_s: float | None, now: float) -> None:
        if self.timed:
            if pts_s is not None:  # a first frame without pts is left out
                self._rate_times.append(pts_s)
            return
        gap = now - self._last_arrival if self._last_arrival is not None else 0.0
        self._last_arrival = now
        self._burst_over = self._burst_over or gap > PROBE_BURST_GAP_S
        if self._burst_over:
            self._rate_times.append(now)

    def fps(self) -> float | None:
        times = self._rate_times
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])


class CameraReader:
    """Reads one camera on a daemon thread ``tdmi-source-N``; ``next_frame`` gives its newest frame.

    ``on_state(state, error)`` is called on the reader's thread at each change of state.
    """

    _numbers = itertools.count(1)

    def __init__(
        self,
        url: CheckedUrl,
        settings: Settings,
        on_state: Callable[[ReaderState, str | None], None] | None = None,
    ):
        self._url, self._settings, self._on_state = url, settings, on_state
        self._mailbox = _Mailbox()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the fields stats() reads
        self._state = ReaderState.CONNECTING
        self._last_error: str | None = None
        self._frames_read = self._reconnects = 0
        self._size: tuple[int, int] | None = None
        self._live_since: float | None = None
        self._clock: _StreamClock | None = None  # the current connection's
        self._thread = threading.Thread(
            target=self._run, name=f"tdmi-source-{next(self._numbers)}", daemon=True
        )

    def start(self) -> None:
        if av.logging.get_level() is not None:  # FFmpeg's lines may hold the URL's password
            av.logging.set_level(None)
        self._thread.start()

    def next_frame(self, after: int, timeout: float) -> CameraFrame | None:
        """The newest frame with ``seq > after``; None when none comes within ``timeout`` or the
        reader stops. Blocking, thread-safe."""
        return self._mailbox.take(after, timeout)

    def stats(self) -> ReaderStats:
        with self._lock:
            width, height = self._size or (None, None)
            return ReaderStats(
                state=self._state,
                frames_read=self._frames_read,
                frames_skipped=self._mailbox.skipped,
                camera_fps=self._clock.fps() if self._clock is not None else None,
                width=width,
                height=height,
                live_since=self._live_since,
                reconnects=self._reconnects,
                last_error=self._last_error,
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and let the frame go; waits at most ``timeout`` for the thread (module
        docstring). Idempotent."""
        self._stopping.set()
        self._mailbox.close()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.info("source %s stopped; its thread ends when FFmpeg's blocked read times out", self._url)
        self._set_state(ReaderState.STOPPED, None)

    def _set_state(self, state: ReaderState, error: str | None) -> None:
        """Record a change (``error`` None keeps the last error) and tell ``on_state``; nothing
        follows a stop, and only a stop follows a failure."""
        with self._lock:
            final = self._state == ReaderState.STOPPED or (
                self._state == ReaderState.FAILED and state != ReaderState.STOPPED
            )
            if final or (state, error) == (self._state, self._last_error):
                return
            if state == ReaderState.RECONNECTING and self._state != ReaderState.RECONNECTING:
                self._reconnects += 1
            if state in (ReaderState.CONNECTING, ReaderState.RECONNECTING):
                self._live_since = None
            self._state = state
            self._last_error = error if error is not None else self._last_error
        if self._on_state is not None:
            try:
                self._on_state(state, error)
            except Exception:
                log.exception("source %s: the state callback failed", self._url)

    def _run(self) -> None:
        backoff = Backoff(first_s=0.25, cap_s=2.0)
        while not self._stopping.is_set():
            try:
                if self._read(backoff) and self._url.is_file:
                    continue  # a file played to its end: again from the start, as a looping camera
                error = "the source ended its stream"
            except SourceFailed as exc:
                log.warning("source %s failed: %s", self._url, exc)
                self._set_state(ReaderState.FAILED, str(exc))
                return
            except _Reconnect as exc:
                error = str(exc)
            except Exception:
                log.exception("source %s: reading the camera failed unexpectedly", self._url)
                self._set_state(ReaderState.FAILED, "an internal error stopped the reader (see the log)")
                return
            if self._stopping.is_set():
                return
            if backoff.failures == 0:  # one line per outage, not one per attempt
                log.warning("source %s: %s; reconnecting until it answers", self._url, error)
            self._set_state(ReaderState.RECONNECTING, error)
            if self._stopping.wait(backoff.next_delay()):
                return

    def _read(self, backoff: Backoff) -> bool:
        """One connection, frame by frame, until it ends, stalls or the reader stops; whether it
        gave a frame."""
        try:
            url = check_source_url(self._url.reveal(), self._settings)  # again: DNS may have changed
        except SourceRefused as exc:
            raise SourceFailed(str(exc)) from None
        stall_s, connect_s = self._settings.source_stall_s, self._settings.source_connect_timeout_s
        started = time.monotonic()
        try:
            container = av.open(
                url.reveal(),
                options=_ffmpeg_options(url, self._settings),
                format="v4l2" if url.is_file and url.reveal().startswith("/dev/video") else None,
                timeout=(connect_s, stall_s),
            )
        except (av.FFmpegError, OSError) as exc:
            opening = Attempt(opened=False, packets=0, waited_s=time.monotonic() - started)
            raise _Reconnect(connection_error(exc, opening, connect_s, stall_s)) from None
        last_frame, published, packets = time.monotonic(), False, 0
        try:
            if not container.streams.video:
                raise SourceFailed("the source has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # one core per camera at most; no frame-thread delay
            # MJPEG over HTTP and other formats without timestamps get made-up pts: arrival counts
            timed = not container.format.flags & _NO_TIMESTAMPS
            clock = _StreamClock(timed, paced=url.is_file)
            with self._lock:
                self._clock = clock
            for packet in container.demux(stream):
                if self._stopping.is_set():
                    break
                packets += 1
                for frame in _decoded(packet):
                    self._publish(frame, clock)
                    backoff.reset()
                    last_frame, published = time.monotonic(), True
                if time.monotonic() - last_frame > stall_s:
                    raise _Reconnect(f"no frame from the camera for {stall_s:g} s")
        except (av.FFmpegError, OSError) as exc:
            streaming = Attempt(opened=True, packets=packets, waited_s=time.monotonic() - last_frame)
            raise _Reconnect(connection_error(exc, streaming, connect_s, stall_s)) from None
        finally:
            container.close()
        return published

    def _publish(self, frame: av.VideoFrame, clock: _StreamClock) -> None:
        limit = self._settings.max_video_pixels
        if frame.width * frame.height > limit:
            raise SourceFailed(
                f"the camera sends {frame.width}x{frame.height} frames, more than the {limit} pixels "
                "allowed (TDMI_MAX_VIDEO_PIXELS)"
            )
        image = frame.to_ndarray(format="rgb24")
        now = time.time()
        pts_s = float(frame.time) if clock.timed and frame.time is not None else None
        with self._lock:
            captured_at = clock.captured_at(pts_s, now)
        if clock.paced and self._stopping.wait(max(0.0, captured_at - time.time())):
            return  # stopped while holding a file's frame to its time
        with self._lock:
            self._frames_read += 1
            seq = self._frames_read
            self._size = (frame.width, frame.height)
            first = self._state != ReaderState.LIVE
            if first:
                self._live_since = now
        self._mailbox.put(CameraFrame(seq=seq, image=image, captured_at=captured_at, pts_s=pts_s))
        if first:
            if self._reconnects:
                log.info("source %s is live again", self._url)
            self._set_state(ReaderState.LIVE, None)


def _decoded(packet: av.Packet) -> list[av.VideoFrame]:
    """A packet's frames; none for a damaged packet (a camera's stream heals at its next key frame)."""
    try:
        return list(packet.decode())  # type: ignore[arg-type]
    except av.InvalidDataError:
        return []


def _ffmpeg_options(url: CheckedUrl, settings: Settings) -> dict[str, str]:
    timeout_us = str(round(settings.source_connect_timeout_s * 1_000_000))
    options = {
        "protocol_whitelist": _PROTOCOLS[url.scheme],
        "analyzeduration": "500000",  # µs of stream probed before the first frame is handed out
        "probesize": "1000000",
    }
    if url.scheme in ("rtsp", "rtsps"):
        options |= {"rtsp_transport": "tcp", "timeout": timeout_us}
    elif url.scheme in ("http", "https"):
        # a redirect could lead anywhere: the policy checked this host only
        options |= {"timeout": timeout_us, "rw_timeout": timeout_us, "max_redirects": "0"}
    return options
