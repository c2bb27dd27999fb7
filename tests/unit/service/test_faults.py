"""The one classifier of errors (``tdmi.service.faults``): input, transient state of the server, or bug;
and the HTTP answer of each class (``tdmi.service.errors``)."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tdmi.service.errors import install_error_handlers
from tdmi.service.faults import FaultClass, classify, ignore_transient, is_missing_group
from tdmi.service.media import MediaError
from tdmi.service.video import probe_video

SECRET_PATH = "/srv/secret/uploads/abc.mp4"


IN, TR, BUG = FaultClass.INPUT, FaultClass.TRANSIENT, FaultClass.BUG
AT = "10.0.0.7:6379"


@pytest.mark.parametrize(
    ("exc", "cls", "kind", "status"),
    [
        (MediaError("corrupt", "clip.mp4: video data is damaged"), IN, "corrupt", 422),
        (MediaError("too_large", "frames too large"), IN, "too_large", 413),
        (OSError(errno.EMFILE, "Too many open files", SECRET_PATH), TR, "out_of_descriptors", 503),
        (OSError(errno.ENFILE, "File table overflow"), TR, "out_of_descriptors", 503),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), TR, "out_of_memory", 503),
        (MemoryError(), TR, "out_of_memory", 503),
        (OSError(errno.ENOSPC, "No space left on device", SECRET_PATH), TR, "insufficient_storage", 507),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), TR, "insufficient_storage", 507),
        (sqlite3.OperationalError("database or disk is full"), TR, "insufficient_storage", 507),
        (sqlite3.OperationalError("no such table: jobs"), BUG, "OperationalError", 500),
        (RedisConnectionError(f"Error 111 connecting to {AT}."), TR, "redis_unreachable", 503),
        (RedisTimeoutError(f"Timeout reading from {AT}"), TR, "redis_unreachable", 503),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), TR, "unreachable", 503),
        (TimeoutError(), TR, "unreachable", 503),
        (ResponseError("NOGROUP No such key 'tdmi:jobs' or consumer group"), TR, "redis_group_missing", 503),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), TR, "redis_refusing", 503),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), TR, "redis_refusing", 503),
        (
            ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
            BUG,
            "ResponseError",
            500,
        ),
        (FileNotFoundError(errno.ENOENT, "No such file", SECRET_PATH), BUG, "FileNotFoundError", 500),
        (KeyError("frames"), BUG, "KeyError", 500),
    ],
)
def test_each_error_type_has_one_class(exc: BaseException, cls: FaultClass, kind: str, status: int) -> None:
    fault = classify(exc)
    assert (fault.cls, fault.kind, fault.status) == (cls, kind, status)
    assert "secret" not in fault.detail and AT not in fault.detail  # no path, no address
    assert (fault.detail == "") == (cls is BUG)


def test_an_error_caused_by_a_transient_state_is_transient_whatever_it_is_called() -> None:
    def wrapped(cause: BaseException) -> MediaError:
        try:
            raise RuntimeError("deeper") from cause
        except RuntimeError as middle:
            try:
                raise MediaError("unsupported_media", "clip.mp4: not a readable video file") from middle
            except MediaError as outer:
                return outer

    assert classify(wrapped(OSError(errno.EMFILE, "Too many open files"))).kind == "out_of_descriptors"
    assert classify(wrapped(ValueError("junk"))).cls is FaultClass.INPUT


def test_only_an_explicit_cause_counts_not_an_error_met_while_handling_another() -> None:
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError:
            raise KeyError("a bug in the handler")  # noqa: B904 - the implicit context is the point
    except KeyError as exc:
        assert classify(exc).cls is FaultClass.BUG


def test_a_cause_chain_that_loops_ends() -> None:
    exc = RuntimeError("a")
    other = RuntimeError("b")
    exc.__cause__, other.__cause__ = other, exc
    assert classify(exc).cls is FaultClass.BUG


@contextmanager
def _no_free_descriptors() -> Iterator[None]:
    """This process really out of descriptors: a low soft limit, every number below it taken."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, highest + 64), hard))  # a few to fill
    try:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_pyav_out_of_descriptors_reads_as_an_unreadable_file_and_is_classed_transient(tmp_path: Path) -> None:
    """The issue's case: a valid video opened while the process has no descriptor left."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)  # never read: opening it already fails
    with _no_free_descriptors(), pytest.raises(MediaError) as raised:
        probe_video(video)
    assert "Too many open files" in str(raised.value)  # what the user used to read, for good
    fault = classify(raised.value)
    assert (fault.cls, fault.kind, fault.status) == (FaultClass.TRANSIENT, "out_of_descriptors", 503)


def test_missing_group_and_best_effort_calls() -> None:
    assert is_missing_group(ResponseError("NOGROUP No such key"))
    assert not is_missing_group(ResponseError("BUSYGROUP Consumer Group name already exists"))
    with ignore_transient():
        raise RedisConnectionError("gone")
    with pytest.raises(KeyError), ignore_transient():
        raise KeyError("a bug is never dropped")


def _raising(exc: BaseException) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    return app


def _because(cause: BaseException) -> MediaError:
    try:
        raise MediaError(
            "unsupported_media", "clip.mp4: not a readable video file (Too many open files)"
        ) from cause
    except MediaError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "status", "kind", "retry_after"),
    [
        (MediaError("corrupt", "clip.mp4: video data is damaged"), 422, "corrupt", None),
        (_because(OSError(errno.EMFILE, "Too many open files", SECRET_PATH)), 503, "out_of_descriptors", "1"),
        (OSError(errno.ENOSPC, "No space left on device", SECRET_PATH), 507, "insufficient_storage", "1"),
        (RedisConnectionError(f"Error 111 connecting to {AT}."), 503, "redis_unreachable", "1"),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), 503, "redis_refusing", "1"),
        (FileNotFoundError(errno.ENOENT, "No such file", SECRET_PATH), 500, "internal", None),
    ],
)
def test_each_class_gets_its_http_answer_without_a_path_or_an_address(
    exc: BaseException, status: int, kind: str, retry_after: str | None
) -> None:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=_raising(exc), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    answer = asyncio.run(get())
    assert (answer.status_code, answer.json()["error"], answer.headers.get("retry-after")) == (
        status,
        kind,
        retry_after,
    )
    assert "secret" not in answer.text and AT not in answer.text and answer.headers["x-request-id"]
