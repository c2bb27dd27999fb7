"""Every error classified once: the input's, the server's passing state, or a bug of ours.

- **input**: what the client sent cannot be used (``MediaError``). Trying again cannot help: a
  job fails at once, a request gets its 4xx.
- **transient**: the server's own state, which passes: file descriptors, memory or disk space
  exhausted, Redis (or another peer) away, refusing writes, or back without its data (a missing
  consumer group).
  Work is tried again after a backoff; a request is answered 503 (507 for a full disk) with
  ``Retry-After``.
- **bug**: anything else. It is logged with a reference that the client is told; a job's run
  counts as a failed attempt.

An error raised *because of* a transient state is transient: PyAV's "Too many open files" becomes
"not a readable video file" (``raise MediaError(...) from exc``), so the causes are searched
too. Only explicit causes: an error raised while merely *handling* another is judged by itself.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from tdmi.service.media import MediaError

__all__ = [
    "DISK_FULL",
    "Fault",
    "FaultClass",
    "classify",
    "ignore_transient",
    "is_missing_group",
    "is_transient",
]

_MAX_CHAIN = 16  # causes followed; a chain is a few links, a cycle or a freak one stops here


class FaultClass(StrEnum):
    INPUT = "input"
    TRANSIENT = "transient"
    BUG = "bug"


@dataclass(frozen=True)
class Fault:
    """What an error is: its class, a stable ``kind`` (API error code, metric label), a ``detail``
    a client may read (no path, address or library text; empty for a bug) and an HTTP status."""

    cls: FaultClass
    kind: str
    detail: str
    status: int

    @property
    def transient(self) -> bool:
        return self.cls is FaultClass.TRANSIENT


def _passing(kind: str, detail: str, status: int = 503) -> Fault:
    return Fault(FaultClass.TRANSIENT, kind, detail, status)


_OUT_OF_DESCRIPTORS = _passing("out_of_descriptors", "the server is out of file descriptors for now")
_OUT_OF_MEMORY = _passing("out_of_memory", "the server is out of memory for now")
DISK_FULL = _passing("insufficient_storage", "the server's data disk is full for now", 507)
_OS_STATES = {
    errno.EMFILE: _OUT_OF_DESCRIPTORS,
    errno.ENFILE: _OUT_OF_DESCRIPTORS,
    errno.ENOMEM: _OUT_OF_MEMORY,
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
}
_REDIS_AWAY = _passing("redis_unreachable", "the job store (redis) is unreachable")
_PEER_AWAY = _passing("unreachable", "a service the server uses is unreachable for now")
_REDIS_REFUSING = _passing("redis_refusing", "the job store (redis) refuses writes for now")
_REDIS_GROUP = _passing("redis_group_missing", "the job queue (redis) is being set up again")
# replies of a Redis that is loading, out of memory, read-only, or unable to persist
_REFUSALS = (OutOfMemoryError, ReadOnlyError, TryAgainError, MasterDownError)
_REFUSAL_CODES = ("MISCONF", "NOREPLICAS", "LOADING")


def classify(exc: BaseException) -> Fault:
    """The class of ``exc``: transient if any error of its cause chain is, else input or bug."""
    for link in _chain(exc):
        if (fault := _transient(link)) is not None:
            return fault
    if isinstance(exc, MediaError):
        return Fault(FaultClass.INPUT, exc.kind, str(exc), exc.http_status)
    return Fault(FaultClass.BUG, type(exc).__name__, "", 500)


def is_transient(exc: BaseException) -> bool:
    return classify(exc).transient


def is_missing_group(exc: BaseException) -> bool:
    """Redis answered NOGROUP: it came back without its data and the consumer group is gone."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


@contextmanager
def ignore_transient() -> Iterator[None]:
    """For best-effort calls (a progress report, a renewal): a passing fault is dropped, a bug is not."""
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            raise


def _transient(exc: BaseException) -> Fault | None:
    if isinstance(exc, OSError) and exc.errno in _OS_STATES:
        return _OS_STATES[exc.errno]
    if isinstance(exc, MemoryError):
        return _OUT_OF_MEMORY
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):  # SQLite's ENOSPC
        return DISK_FULL
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return _REDIS_AWAY
    if isinstance(exc, ConnectionError | TimeoutError):  # a socket's peer, or a wait, ran out
        return _PEER_AWAY
    if is_missing_group(exc):
        return _REDIS_GROUP
    if isinstance(exc, _REFUSALS) or (isinstance(exc, ResponseError) and str(exc).startswith(_REFUSAL_CODES)):
        return _REDIS_REFUSING
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``raise ... from``), and so on."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(link))
        yield link
        link = link.__cause__
