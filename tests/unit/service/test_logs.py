"""The log's bounds: masking secrets costs time linear in a line, a client's value cannot start
a line or carry a terminal escape, and the caller's thread never formats or writes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tdmi.service.logs import (
    MAX_MESSAGE_CHARS,
    MAX_VALUE_CHARS,
    OWN_LOGGERS,
    BackgroundHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    redact,
)

FORGED = "2026-01-01 00:00:00,000 CRITICAL tdmi.auth: admin key accepted"

# texts that made the former masking patterns backtrack over the rest of the line at each start
HOSTILE: dict[str, Callable[[int], str]] = {
    "secret names": lambda n: "?" + "key" * (n // 3),
    "schemes": lambda n: "a://" * (n // 4),
    "user infos": lambda n: "://a:" * (n // 5),
    "secret parameters": lambda n: "?key=" * (n // 5),
    "separators": lambda n: "&" * n,
    "letters": lambda n: "a" * n,
}


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging (the regex engine checks for signals as it runs)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"not done within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _seconds(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("shape", list(HOSTILE))
def test_masking_takes_time_linear_in_the_text(shape: str) -> None:
    """10 KB and 1 MB of the same hostile shape: linear time is ~100x (allowed: 1000x), quadratic
    10,000x (the former patterns: a 60 KB URL took 20 s, 1 MB would take hours)."""
    small = _seconds(HOSTILE[shape](10_000))
    with _deadline(20):
        large = _seconds(HOSTILE[shape](1_000_000))
    assert large < 5.0
    assert large < 1000 * small + 0.05, f"{shape}: {small * 1e3:.2f} ms -> {large * 1e3:.0f} ms"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET /v1/stream?api_key=s3cret&x=1", "GET /v1/stream?api_key=***&x=1"),
        ("/?a=b?token=zz&c=d", "/?a=b?token=***&c=d"),
        ("/?X-Auth-Token=zz /?passwd=p", "/?X-Auth-Token=*** /?passwd=***"),
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("connect https://user:p/a+s=@h/ failed", "connect https://user:***@h/ failed"),
        ("/?model=tiny&frames=3 https://host:8000/x", "/?model=tiny&frames=3 https://host:8000/x"),
    ],
)
def test_secrets_are_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("tdmi.test", logging.WARNING, __file__, 1, message, args, exc_info)


def _raised(message: str) -> ValueError:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


HOSTILE_VALUE = f"x.mp4\n{FORGED}\r\x1b[2J\x1b[31m\x9b\x85\u2028\u202e\ud800\x00"


def test_the_text_format_writes_a_client_value_on_its_own_line_escaped() -> None:
    line = TextFormatter().format(_record("upload %s of %s", HOSTILE_VALUE, "?api_key=s3cret"))
    assert "\n" not in line and "s3cret" not in line
    assert not [char for char in "\r\x1b\x9b\x85\u2028\u202e\ud800\x00" if char in line]
    assert "x.mp4\\n2026-01-01" in line and "\\x1b[2J" in line and "\\ud800" in line


def test_a_traceback_keeps_its_lines_indented_so_no_line_of_it_starts_a_record() -> None:
    record = _record("job failed", exc=_raised(f"bad name x.mp4\n{FORGED} redis://:pw@h/\x1b[0m"))
    first, *rest = TextFormatter().format(record).split("\n")
    assert first.endswith("tdmi.test: job failed")
    assert rest[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in rest)
    assert f"  {FORGED} redis://:***@h/\\x1b[0m" in rest


def test_the_json_format_is_one_parsable_ascii_line_whatever_the_value() -> None:
    line = JsonFormatter().format(_record("upload %s é 中", HOSTILE_VALUE, exc=_raised("boom ?token=t")))
    assert line.isascii() and "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == f"upload {HOSTILE_VALUE} é 中"
    assert entry["level"] == "warning" and "token=***" in entry["exception"]


def test_a_long_message_is_cut_with_a_marker() -> None:
    line = TextFormatter().format(_record("%s", "a" * 100_000 + "?key=s3cret"))
    assert len(line) < MAX_MESSAGE_CHARS + 200 and line.endswith("more characters]")


class _Collecting(logging.Handler):
    """A target that keeps what it is given, after ``gate`` opens, noting the formatting thread."""

    def __init__(self, gate: threading.Event | None = None):
        super().__init__()
        self.lines: list[str] = []
        self.threads: set[str] = set()
        self.gate = gate

    def emit(self, record: logging.LogRecord) -> None:
        if self.gate is not None:
            self.gate.wait()
        self.threads.add(threading.current_thread().name)
        self.lines.append(record.getMessage())


def test_the_caller_only_queues_and_closing_writes_everything_in_order() -> None:
    gate = threading.Event()
    target = _Collecting(gate)
    handler = BackgroundHandler(target)
    started = time.monotonic()
    for i in range(200):
        handler.handle(_record("line %d of %s", i, "v" * 1_000_000))
    assert time.monotonic() - started < 2.0  # the target is blocked: nothing waited for it
    gate.set()
    handler.close()
    assert target.lines == [
        f"line {i} of {'v' * MAX_VALUE_CHARS}...[{1_000_000 - MAX_VALUE_CHARS} more characters]"
        for i in range(200)
    ]
    assert target.threads == {"tdmi-log"}


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    gate = threading.Event()
    target = _Collecting(gate)
    handler = BackgroundHandler(target, capacity=10)
    for i in range(100):
        handler.handle(_record("line %d", i))
    gate.set()
    handler.close()
    written = [line for line in target.lines if line.startswith("line ")]
    notices = [line for line in target.lines if "dropped" in line]
    assert len(notices) == 1
    dropped = int(notices[0].split()[0])
    assert len(written) + dropped == 100 and 10 <= len(written) <= 11


def test_a_record_after_close_is_written_at_once() -> None:
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    target.setFormatter(TextFormatter())
    handler = BackgroundHandler(target)
    handler.close()
    handler.handle(_record("after %s", "close"))
    assert stream.getvalue().rstrip().endswith("tdmi.test: after close")


def test_a_coroutine_can_wait_for_the_lines_logged_before_it_without_blocking_its_loop() -> None:
    gate = threading.Event()
    target = _Collecting(gate)
    handler = BackgroundHandler(target)

    async def scenario() -> tuple[bool, list[str]]:
        handler.handle(_record("before the answer"))
        waiting = asyncio.create_task(handler.written(timeout_s=30))
        await asyncio.sleep(0.05)
        blocked = not waiting.done()  # the writer is held: the loop runs on, the wait does not end
        gate.set()
        await waiting
        return blocked, list(target.lines)

    blocked, lines = asyncio.run(scenario())
    handler.close()
    assert blocked and lines == ["before the answer"]


class _Slow(_Collecting):
    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.01)
        super().emit(record)


def test_flush_returns_once_the_records_before_it_are_written() -> None:
    """uvicorn ends the process with a signal after its last lines: it flushes first."""
    target = _Slow()
    handler = BackgroundHandler(target)
    for i in range(20):
        handler.handle(_record("line %d", i))
    handler.flush()
    assert len(target.lines) == 20
    handler.close()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes the process's root logger: put it back after the test."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in OWN_LOGGERS)]
    levels, handlers = [logger.level for logger in loggers], logging.getLogger().handlers[:]
    yield
    for handler in logging.getLogger().handlers:
        handler.close()
    logging.getLogger().handlers[:] = handlers
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("restored_logging")
def test_libraries_log_warnings_only_unless_the_level_is_debug() -> None:
    """A first start's ONNX export logged some 170 INFO lines of onnxscript and onnx_ir."""
    libraries = [
        logging.getLogger(name) for name in ("onnxscript.rewriter", "onnx_ir.passes", "PIL", "httpx")
    ]
    configure_logging("text", "info")
    assert logging.getLogger("tdmi.inference").isEnabledFor(logging.INFO)
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    assert not any(library.isEnabledFor(logging.INFO) for library in libraries)
    assert all(library.isEnabledFor(logging.WARNING) for library in libraries)
    configure_logging("text", "warning")
    assert not logging.getLogger("tdmi.service").isEnabledFor(logging.INFO)
    configure_logging("text", "debug")
    assert logging.getLogger("tdmi.inference").isEnabledFor(logging.DEBUG)
    assert all(library.isEnabledFor(logging.DEBUG) for library in libraries)
