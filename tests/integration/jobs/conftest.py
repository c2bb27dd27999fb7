"""One behavioural suite, two job queues: every test here runs against SQLite (in tmp) and against
a real redis-server. ``Backend`` opens queues and simulates a process that died mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tdmi.service.cluster.connection import connect
from tdmi.service.cluster.jobs import RedisJobQueue
from tdmi.service.jobs.queue import JobQueue
from tdmi.service.jobs.sqlite import SqliteJobQueue
from tests.helpers.redis_server import RedisServer

_SUITE_DB = 15  # cluster tests count their databases up from 1


@dataclass
class Backend:
    name: str
    data_dir: Path
    redis_url: str | None = None
    opened: list[JobQueue] = field(default_factory=list)

    def open(self, consumer: str = "w1", claim_idle_s: float = 30.0) -> JobQueue:
        """A queue as one process sees it (an API node and a worker of one cluster share Redis)."""
        queue: JobQueue
        if self.redis_url is None:
            queue = SqliteJobQueue(self.data_dir)
        else:
            queue = RedisJobQueue(connect(self.redis_url), self.data_dir, consumer, claim_idle_s)
        self.opened.append(queue)
        return queue

    async def after_crash(self, queue: JobQueue) -> JobQueue:
        """The queue as the next process sees it after this one died without ending its runs:
        SQLite is opened again; in Redis another worker claims the silent runs at once."""
        await self.close(queue)
        return self.open(consumer="rescuer", claim_idle_s=0.0)

    async def close(self, queue: JobQueue) -> None:
        queue.close()
        if isinstance(queue, RedisJobQueue):
            await queue.redis.aclose()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        yield Backend("sqlite", data_dir)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    server.client(_SUITE_DB).flushdb()
    yield Backend("redis", data_dir, server.url(_SUITE_DB))
