"""A camera source's results on disk: written as they come, read back by time range, swept by age.

A recorded source has a folder ``DATA/sources/<source_id>/``: ``source.json`` (owner, model and
skeleton, so the recording stays readable and owned after the source is deleted) and one file of
JSON lines per UTC hour of capture time, ``YYYYMMDDTHH.jsonl``. Each line is a viewer's ``result``
message as it was encoded for the viewers, wrapped with its capture time and the frame's size.
In a cluster the worker running the source writes into the same folder on the shared data
directory, each run of the source (``runs``: a worker took it, it moved) into files of its own,
``YYYYMMDDTHH.runN.jsonl``: a worker that lost the lease and has not yet noticed never appends
into the file its successor writes. Reading takes every file of an hour, so a range spans moves.

Writes happen on a thread of the source's own (``RecordingWriter``), behind a queue of
``QUEUE_LINES``: a disk slower than the camera loses lines (counted in
``tdmi_source_records_dropped_total``), never the event loop's time nor memory. The writer also
refuses to write while the disk has less than ``min_free_bytes`` free, as uploads are refused.
Files go by the jobs' retention (``job_retention_hours``, by last write), whether or not the
source still exists; a deleted source's folder goes with its last file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ValidationError

from tdmi.protocol import JOB_ID_PATTERN, FramePoses, JobResultPublic, SkeletonPublic, VideoPublic
from tdmi.protocol.stream import ResultMessage
from tdmi.service.auth import Caller
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.inference.threads import named_threads
from tdmi.service.metrics import ServiceMetrics

__all__ = [
    "QUEUE_LINES",
    "RecordedFrame",
    "RecordingMeta",
    "RecordingWriter",
    "Recordings",
    "TooManyFrames",
    "read_range",
    "recording_result",
    "sweep_recordings",
]

log = logging.getLogger("tdmi.sources")

QUEUE_LINES = 512  # lines waiting for the disk, per source (a line: about 0.5 KB a person)
IDLE_CLOSE_S = 1.0  # no line for this long: the hour's file is closed (a swept file is not held open)
FREE_CHECK_S = 5.0  # how often the free disk space is looked at while writing
META = "source.json"
SUFFIX = ".jsonl"
HOUR_NAME = "%Y%m%dT%H"
# why a line was not written: the writer was behind, the disk had too little room, a write failed
DROP_REASONS = ("behind", "disk_full", "error")


class RecordingMeta(BaseModel):
    """``source.json``: whose recording it is and how to read its keypoints."""

    source_id: str
    owner: str | None
    model: str
    skeleton: SkeletonPublic


class RecordedFrame(BaseModel):
    """One line of a recording."""

    at: float  # capture time, wall-clock seconds
    width: int | None
    height: int | None
    result: ResultMessage


class TooManyFrames(Exception):
    """The range holds more frames than one answer may carry."""


class Recordings:
    """The recordings of a data directory: a writer for each recorded source, reading back and the
    retention sweep. Holds no state of its own: a cluster's nodes share the folder."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics):
        self.settings, self.metrics = settings, metrics
        self.root = settings.data_dir / "sources"

    async def writer(self, meta: RecordingMeta, run: int | None = None) -> RecordingWriter:
        """A source's writer (not started), its ``source.json`` written; ``run``: which run of a
        cluster's source it writes (module docstring), None in embedded mode."""
        folder = self.root / meta.source_id
        await asyncio.to_thread(_write_meta, folder, meta)
        dropped = self.metrics.source_records_dropped
        return RecordingWriter(
            folder, self.settings.min_free_bytes, lambda why: dropped.labels(why).inc(), run=run
        )

    async def results(self, source_id: str, caller: Caller, start: float, end: float) -> JobResultPublic:
        """The results captured in ``[start, end]``; 404 for a source this caller cannot see or that
        recorded nothing, 422 for a range too long or with too many frames."""
        settings = self.settings
        if not 0 <= end - start <= settings.source_results_max_s:
            raise ApiError(
                422,
                "bad_range",
                f"'to' must not be before 'from', nor more than {settings.source_results_max_s:g} s after it",
            )
        folder = self.root / source_id
        valid = re.fullmatch(JOB_ID_PATTERN, source_id) is not None  # source ids are made as job ids are
        meta = await asyncio.to_thread(_read_meta, folder) if valid else None
        if meta is None or not caller.sees(meta.owner):
            raise ApiError(404, "not_found", "no recording of this source")
        limit = settings.source_results_max_frames
        try:  # reading and decoding thousands of lines: off the event loop
            return await asyncio.to_thread(
                lambda: recording_result(meta, read_range(folder, start, end, limit))
            )
        except TooManyFrames:
            raise ApiError(
                422, "too_many_frames", f"more than {limit} frames in this range: ask for a shorter one"
            ) from None

    async def sweep(self, recording: set[str], now: float | None = None) -> int:
        """Remove files last written more than ``job_retention_hours`` ago (how many went);
        ``recording``: the sources writing now, whose folders stay."""
        cutoff = (time.time() if now is None else now) - self.settings.job_retention_hours * 3600
        swept = await asyncio.to_thread(sweep_recordings, self.root, cutoff, recording)
        if swept.files:
            log.info("retention: removed %d recording files", swept.files)
        return swept.files


def _write_meta(folder: Path, meta: RecordingMeta) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).write_text(meta.model_dump_json())


def _read_meta(folder: Path) -> RecordingMeta | None:
    """The recording's description, None where there is none (or it cannot be read)."""
    try:
        return RecordingMeta.model_validate_json((folder / META).read_bytes())
    except (OSError, ValidationError):
        return None


def _hour(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime(HOUR_NAME)


class RecordingWriter:
    """Appends a source's result lines to its hour files on a thread of its own."""

    def __init__(
        self,
        folder: Path,
        min_free_bytes: int,
        on_dropped: Callable[[str], None],
        capacity: int = QUEUE_LINES,
        run: int | None = None,
    ):
        self.folder, self.min_free_bytes, self.on_dropped = folder, min_free_bytes, on_dropped
        self._suffix = SUFFIX if run is None else f".run{run}{SUFFIX}"
        self._lines: queue.Queue[tuple[float, str] | None] = queue.Queue(maxsize=capacity)  # None: stop
        self._thread = named_threads("tdmi-source-record")  # named in the OS too (top -H)
        self._running: Future[None] | None = None
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._room_checked_at = -FREE_CHECK_S
        self._room = True
        self._failing = False  # a write failed and the next success has not come: log once

    def start(self) -> None:
        self._running = self._thread.submit(self._run)

    def append(self, result: ResultMessage, encoded: str, size: tuple[int, int] | None) -> None:
        """From the event loop: queue one result (``encoded``: its JSON, as the viewers got it)."""
        at = result.timestamp if result.timestamp is not None else time.time()
        height, width = size if size is not None else (None, None)
        line = f'{{"at":{at!r},"width":{_number(width)},"height":{_number(height)},"result":{encoded}}}\n'
        try:
            self._lines.put_nowait((at, line))
        except queue.Full:
            self.on_dropped("behind")

    def waiting(self) -> int:
        """Lines queued and not yet written."""
        return self._lines.qsize()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, close the file and end the thread (blocking: call off the loop)."""
        running = self._running
        if running is not None:
            if not running.done():
                with contextlib.suppress(queue.Full):  # still full after the timeout: the disk hangs
                    self._lines.put(None, timeout=timeout)
            try:
                running.result(timeout)
            except TimeoutError:
                log.warning(
                    "recording to %s: the disk took no line for %g s; stopped waiting", self.folder, timeout
                )
            except Exception:  # a fault of ours: the source still stops
                log.exception("recording to %s ended with a fault", self.folder)
        self._thread.shutdown(wait=False)

    def _run(self) -> None:
        while True:
            try:
                item = self._lines.get(timeout=IDLE_CLOSE_S)
            except queue.Empty:
                self._close()
                continue
            if item is None:
                self._close()
                return
            self._write(*item)
            if self._lines.empty():
                self._flush()

    def _write(self, at: float, line: str) -> None:
        path = self.folder / (_hour(at) + self._suffix)
        if not self._has_room(path != self._path):
            self.on_dropped("disk_full")
            return
        try:
            if path != self._path or self._file is None:
                self._close()
                self._file, self._path = open(path, "a", encoding="utf-8"), path  # noqa: SIM115
            self._file.write(line)
            self._failing = False
        except OSError as exc:
            self._failed(exc)

    def _flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.on_dropped("error")
        if not self._failing:
            log.warning("recording to %s failed: %s", self.folder, exc.strerror or type(exc).__name__)
            self._failing = True
        self._close()

    def _has_room(self, now_anyway: bool) -> bool:
        """Whether the disk has ``min_free_bytes`` free, looked at every ``FREE_CHECK_S``."""
        now = time.monotonic()
        if now_anyway or now - self._room_checked_at >= FREE_CHECK_S:
            self._room_checked_at = now
            try:
                self._room = shutil.disk_usage(self.folder).free >= self.min_free_bytes
            except OSError:
                self._room = False
        return self._room

    def _close(self) -> None:
        file, self._file, self._path = self._file, None, None
        if file is not None:
            with contextlib.suppress(OSError):  # a failed flush: those lines are lost with the file
                file.close()


def _number(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _hour_files(folder: Path, start: float, end: float) -> list[Path]:
    """The files that may hold lines captured in ``[start, end]``: each hour's, of every run."""
    first = int(start // 3600) * 3600
    return [
        path for t in range(first, int(end) + 1, 3600) for path in sorted(folder.glob(f"{_hour(t)}*{SUFFIX}"))
    ]


def read_range(folder: Path, start: float, end: float, max_frames: int) -> list[RecordedFrame]:
    """Frames captured in ``[start, end]``, in capture order; ``TooManyFrames`` beyond
    ``max_frames``. A line cut short (written while read, or by a crash) is left out."""
    found: list[RecordedFrame] = []
    for path in _hour_files(folder, start, end):
        try:
            with open(path, encoding="utf-8") as file:
                for line in file:
                    frame = _parsed(line)
                    if frame is None or not start <= frame.at <= end:
                        continue
                    if len(found) == max_frames:
                        raise TooManyFrames
                    found.append(frame)
        except FileNotFoundError:
            continue
    found.sort(key=lambda f: f.at)
    return found


def _parsed(line: str) -> RecordedFrame | None:
    if not line.endswith("\n"):
        return None
    try:
        return RecordedFrame.model_validate_json(line)
    except ValidationError:
        return None


def recording_result(meta: RecordingMeta, frames: list[RecordedFrame]) -> JobResultPublic:
    """A time range of a recording as a job's result: the source's id in ``job_id``, each frame's
    ``index`` its live frame id and ``pts`` its capture time (wall-clock seconds); the size is the
    last frame's, the rate the frames' own over the range."""
    sized = [f for f in frames if f.width is not None and f.height is not None]
    width, height = (sized[-1].width or 0, sized[-1].height or 0) if sized else (0, 0)
    span = frames[-1].at - frames[0].at if frames else 0.0
    fps = (len(frames) - 1) / span if span > 0 else 0.0
    return JobResultPublic(
        job_id=meta.source_id,
        model=meta.model,
        video=VideoPublic(width=width, height=height, fps=fps, frames=len(frames)),
        skeleton=meta.skeleton,
        frames=[FramePoses(index=f.result.frame_id, pts=f.at, persons=f.result.persons) for f in frames],
    )


@dataclass(frozen=True)
class Swept:
    files: int
    folders: int


def sweep_recordings(root: Path, cutoff: float, recording: set[str]) -> Swept:
    """Remove hour files last written before ``cutoff``; a folder whose source is not
    ``recording`` now goes with its last file (once its ``source.json`` is as old: a folder just
    made for a source being added is left alone)."""
    files = folders = 0
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return Swept(0, 0)
    for entry in entries:
        folder = Path(entry.path)
        left = 0
        for path in folder.glob(f"*{SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    files += 1
                else:
                    left += 1
            except FileNotFoundError:
                continue
        if not left and entry.name not in recording and _older(folder / META, cutoff):
            (folder / META).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something else is there; left alone
                folder.rmdir()
                folders += 1
    return Swept(files, folders)


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return True
