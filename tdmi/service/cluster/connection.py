"""Redis connections that survive a Redis restart: bounded calls, Streams followed through an
outage (``tdmi.service.backoff``), a watch for readiness."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tdmi.service.backoff import Backoff
from tdmi.service.faults import classify, is_transient

__all__ = ["TRANSIENT", "RedisWatch", "connect", "follow"]

log = logging.getLogger("tdmi.cluster")

# what a restarting or unreachable Redis raises; loops wait and try again
TRANSIENT: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
BLOCK_MS = 1000  # blocking reads wake up this often, so loops notice a stop


def connect(url: str) -> Redis:
    """A client with bounded waits: a dead Redis fails calls in seconds, never hangs them.

    Pooled connections opened before a Redis restart are dead; a call that meets one retries on
    a fresh connection instead of failing.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=BLOCK_MS / 1000 + 5,
        health_check_interval=5,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def follow(
    redis: Redis, key: str, last_id: str, what: str, *, count: int, trim: bool = False
) -> AsyncIterator[dict[bytes, bytes]]:
    """The fields of every entry added to a Stream after ``last_id``, in order, waiting out Redis
    outages; ``trim`` deletes entries once read (a Stream with one reader)."""
    backoff = Backoff()
    while True:
        try:
            answer: Any = await redis.xread({key: last_id}, count=count, block=BLOCK_MS)
            entries = answer[0][1] if answer else []
            if entries and trim:
                await redis.xtrim(key, minid=entries[-1][0])
            backoff.reset()
        except Exception as exc:
            if not is_transient(exc):
                raise
            await backoff.wait(what, exc)
            continue
        for entry_id, fields in entries:
            last_id = entry_id
            yield fields


class RedisWatch:
    """Pings Redis at each ``check`` (a node's loop); tells ``on_change`` why it is unusable, or None."""

    def __init__(self, redis: Redis, on_change: Callable[[str | None], None]):
        self.redis, self.on_change = redis, on_change
        self.reason: str | None = "connecting to redis"

    async def check(self) -> bool:
        try:
            await self.redis.ping()
            reason = None
        except (RedisError, OSError) as exc:
            reason = classify(exc).detail or "the job store (redis) answers wrongly"
            if reason != self.reason:  # the address is for the log; /readyz is public
                log.warning("%s: %s", reason, exc)
        if reason is None and self.reason is not None:
            log.info("redis reachable")
        if reason != self.reason:
            self.reason = reason
            self.on_change(reason)
        return reason is None
