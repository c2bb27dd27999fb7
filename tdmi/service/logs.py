"""Log set-up: one record a line, human-readable or JSON, written by a thread of its own.

What a client sends reaches log lines (paths, file names, ids), so every line is built with
bounds, by the formatter, whatever the call site passed:

- In the caller's thread (the event loop, mostly) a record is only queued, its string arguments
  cut to ``MAX_VALUE_CHARS``: constant work. Formatting, masking and writing happen on the
  ``tdmi-log`` thread, so neither a long line nor a slow reader of the log stalls the server. The
  queue holds ``QUEUE_RECORDS``; what does not fit is counted and reported, never waited for.
  Closing the handler (``logging.shutdown`` at exit does) writes every queued record first, and
  :func:`records_written` lets the service hold an answer until the lines before it are written.
- The message is cut to ``MAX_MESSAGE_CHARS``, then secrets are masked by a linear scan: the
  values of query parameters whose name says they hold a key (uvicorn prints paths with their
  query, the browser page sends its key as ``?api_key=``) and the passwords of URLs.
- The text format escapes every control character of the message (CR, LF, ANSI escapes, ...):
  a value cannot start a line of its own. Tracebacks keep their lines, each indented, so only the
  first line of a record starts at the margin. The JSON format escapes by construction
  (``json.dumps``, ASCII only: lone surrogates and C1 controls included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import textwrap
import threading
import time
from collections.abc import Mapping
from typing import Any

from tdmi.service.client_text import escape_controls, shorten

__all__ = ["BackgroundHandler", "configure_logging", "records_written", "redact", "redact_url"]

MASK = "***"
MAX_VALUE_CHARS = 4096  # each string argument of a record
MAX_MESSAGE_CHARS = 16384  # a record's whole message
MAX_DETAILS_CHARS = 65536  # its traceback
QUEUE_RECORDS = 10_000

# Each pattern's runs are possessive (``*+``) and stop where the next match could start: a
# pass over a text costs time linear in its length, whatever the text.
# ``?name=`` / ``&name=``: the value that follows is masked when the name says it is a secret.
_QUERY_NAME = re.compile(r"[?&]([\w.-]*+)=")
_SECRET_NAME = re.compile(r"key|token|secret|password|passwd|auth", re.IGNORECASE)
_VALUE_END = re.compile(r"[&\s\"']|\Z")
# ``scheme://user:password@``; a password longer than 256 characters is no URL's
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*+:)[^@\s]{1,256}+@")


def _mask_query_secrets(text: str) -> str:
    pieces, done = [], 0
    for match in _QUERY_NAME.finditer(text):
        if match.start() < done or _SECRET_NAME.search(match.group(1)) is None:
            continue  # inside a value already masked, or not a secret
        value_end = _VALUE_END.search(text, match.end())
        pieces += [text[done : match.end()], MASK]
        done = value_end.start() if value_end else len(text)
    pieces.append(text[done:])
    return "".join(pieces)


def redact(text: str) -> str:
    """``text`` with secret query values and URL passwords masked, in time linear in its length."""
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", _mask_query_secrets(text))


def redact_url(url: str) -> str:
    return redact(url)


def _cut(value: Any) -> Any:
    return shorten(value, MAX_VALUE_CHARS) if isinstance(value, str) else value


def _bounded(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` whose string arguments are cut: cheap enough for the event loop."""
    copy = logging.makeLogRecord(record.__dict__)
    if isinstance(copy.args, tuple):
        copy.args = tuple(_cut(value) for value in copy.args)
    elif isinstance(copy.args, Mapping):
        copy.args = {key: _cut(value) for key, value in copy.args.items()}
    return copy


def _message(record: logging.LogRecord) -> str:
    return redact(shorten(record.getMessage(), MAX_MESSAGE_CHARS))


def _details(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback and stack, masked like its message ("" when it has none)."""
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return redact(shorten("\n".join(parts), MAX_DETAILS_CHARS))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: message``, the message escaped; a traceback follows, indented."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(_message(record))
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        details = _details(self, record)
        if details:
            line += "\n" + textwrap.indent(escape_controls(details, keep_newlines=True), "  ")
        return line


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"}`` plus the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
        }
        details = _details(self, record)
        if details:
            entry["exception"] = details
        return json.dumps(entry, ensure_ascii=True)


class BackgroundHandler(logging.Handler):
    """Queues records for ``target``, which a thread of its own formats and writes.

    :meth:`written` lets a coroutine wait, without blocking its loop, until what was logged so far
    is written: the service awaits it before each answer, so that the lines a request caused are
    in the log when its client reads the answer.
    """

    def __init__(self, target: logging.Handler, capacity: int = QUEUE_RECORDS):
        super().__init__()
        self.target = target
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        self._state = threading.Condition()  # of everything below; notified at each record written
        self._queued = self._written = self._dropped = 0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._write, name="tdmi-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        with self._state:
            if not self._closed:
                try:
                    self._queue.put_nowait(_bounded(record))
                    self._queued += 1
                except queue.Full:
                    self._dropped += 1
                return
        self.target.handle(record)  # at exit, after the thread has stopped: written here

    async def written(self, timeout_s: float) -> None:
        """Until every record queued before this call is written, or ``timeout_s`` has passed."""
        loop = asyncio.get_running_loop()
        with self._state:
            if self._written >= self._queued:
                return
            done: asyncio.Future[None] = loop.create_future()
            self._waiters.append((self._queued, loop, done))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await done

    def _write(self) -> None:
        while (record := self._queue.get()) is not None:
            self.target.handle(record)
            with self._state:
                self._written += 1
                self._state.notify_all()
                dropped, self._dropped = self._dropped, 0
                ready = [waiter for waiter in self._waiters if waiter[0] <= self._written]
                self._waiters = [waiter for waiter in self._waiters if waiter[0] > self._written]
            for _, loop, done in ready:
                with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
                    loop.call_soon_threadsafe(_resolve, done)
            if dropped:
                self.target.handle(_dropped_notice(dropped))

    def flush(self, timeout_s: float = 5.0) -> None:
        """Until every record queued before this call is written (``timeout_s`` at most)."""
        with self._state:
            queued = self._queued
            self._state.wait_for(lambda: self._written >= queued, timeout_s)
        self.target.flush()

    def close(self) -> None:
        """Write what is queued, then stop the thread (a second call does nothing)."""
        with self._state:
            closing, self._closed = not self._closed, True
        if closing:
            self._queue.put(None)  # after every record: none is queued once closed
            self._thread.join()
            self.target.flush()
        super().close()


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _dropped_notice(dropped: int) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "tdmi.logs",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "%d log records were dropped: the log output did not keep up",
            "args": (dropped,),
        }
    )


async def records_written(timeout_s: float = 0.5) -> None:
    """Until the records logged so far are written (see :meth:`BackgroundHandler.written`)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BackgroundHandler):
            await handler.written(timeout_s)


# the loggers of this service and of its HTTP server; every other logger is a library's
OWN_LOGGERS = ("tdmi", "uvicorn")


def configure_logging(fmt: str, level: str = "info") -> None:
    """Send every record to one :class:`BackgroundHandler` on the root logger (uvicorn's loggers
    propagate there: run uvicorn with ``log_config=None``, as its dictConfig would close it).

    ``level`` applies to ``OWN_LOGGERS``; the libraries' loggers (at a first start the ONNX
    exporter's ``onnxscript`` and ``onnx_ir`` log some 170 INFO lines) stay at WARNING through
    the root logger, unless ``level`` is debug."""
    stream = logging.StreamHandler()
    stream.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [BackgroundHandler(stream)]
    root.setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
