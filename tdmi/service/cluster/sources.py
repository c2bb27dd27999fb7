"""Camera sources in Redis: the record an API node writes, the lease a worker holds, the state and
the viewer messages that worker writes back, and the overlay pictures it sends while watched.

A source never finishes, so it is not queued like a job: it is held by a lease (a key with a TTL
naming the worker) that the worker renews every beat. A worker that dies stops renewing; the lease
expires after ``node_ttl_s`` and the next worker to look takes it, so a source moves within
seconds, without anyone having to notice the death. Everything a source is lives here, not in an
API node: a restarted API node finds every source running.

The overlay is drawn on the worker, so its pictures cross Redis, but only while someone watches:
an API node with overlay watchers of a source keeps a flag with a TTL up, the worker draws while
it sees the flag, and each picture goes into a stream trimmed exactly to ``OVERLAY_LENGTH`` and
expiring with the flag, so Redis holds at most that many pictures per watched source.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from tdmi.service.cluster import keys

__all__ = ["OUT_LENGTH", "OVERLAY_LENGTH", "SourceBook", "SourceRecord"]

OUT_LENGTH = 256  # viewer messages kept per source: a few seconds, for relays a little behind
OUT_KEPT_S = 60  # a deleted source's messages stay this long, for relays still reading its end
OVERLAY_LENGTH = 2  # overlay pictures kept per source: the newest, and one for a relay a little behind

# KEYS: lease; ARGV: worker id, ttl ms. 1 if the lease was this worker's and is renewed
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease; ARGV: worker id. Deletes the lease only if it is this worker's
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class SourceRecord:
    """What was asked for a source. ``url`` is the URL itself, credentials included: the worker
    opens it; only ``redacted`` is ever shown."""

    source_id: str
    owner: str | None
    url: str
    redacted: str
    model: str
    lookahead: int | None
    max_fps: float | None
    created_at: float  # wall-clock seconds
    record: bool = False  # its results written to the shared data directory by its worker

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, text: str | bytes) -> SourceRecord:
        return cls(**json.loads(text))


class SourceBook:
    """The cluster's camera sources in Redis (API nodes and workers alike)."""

    def __init__(self, redis: Redis, ttl_s: float):
        self.redis, self.ttl_ms = redis, int(ttl_s * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def add(self, record: SourceRecord) -> None:
        await self.redis.hset(keys.SOURCES, record.source_id, record.encode())  # type: ignore[misc]

    async def count(self) -> int:
        return int(await self.redis.hlen(keys.SOURCES))  # type: ignore[misc]

    async def records(self) -> list[SourceRecord]:
        entries: dict[bytes, bytes] = await self.redis.hgetall(keys.SOURCES)  # type: ignore[misc,assignment]
        return sorted((SourceRecord.decode(v) for v in entries.values()), key=lambda r: r.created_at)

    async def remove(self, source_id: str, last_message: str) -> bool:
        """Forget the source (its worker stops it at its next beat); ``last_message`` ends the
        viewers' stream. False if it was already gone."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.SOURCES, source_id)
            pipe.delete(
                keys.source_lease(source_id),
                keys.source_state(source_id),
                keys.source_runs(source_id),
                keys.source_overlay(source_id),
                keys.source_overlay_watched(source_id),
            )
            pipe.xadd(keys.source_out(source_id), {"m": last_message}, maxlen=OUT_LENGTH, approximate=True)
            pipe.expire(keys.source_out(source_id), OUT_KEPT_S)
            removed, *_ = await pipe.execute()
        return bool(removed)

    async def retire(self, source_id: str) -> None:
        """A deleted source's stream, written once more by its worker before it heard: let it go too."""
        await self.redis.expire(keys.source_out(source_id), OUT_KEPT_S)

    async def take(self, source_id: str, worker_id: str) -> int:
        """Lease the source to this worker if nobody holds it: how many times it has been taken
        (this one included), or 0 if another worker holds it or it was deleted."""
        if not await self.redis.set(keys.source_lease(source_id), worker_id, nx=True, px=self.ttl_ms):
            return 0
        if not await self.redis.hexists(keys.SOURCES, source_id):  # type: ignore[misc]
            await self._release(keys=[keys.source_lease(source_id)], args=[worker_id])
            return 0
        return int(await self.redis.incr(keys.source_runs(source_id)))

    async def renew(self, worker_id: str, source_ids: list[str]) -> set[str]:
        """Renew this worker's leases; the ids whose lease it no longer holds."""
        lost = set()
        for source_id in source_ids:
            if not await self._renew(keys=[keys.source_lease(source_id)], args=[worker_id, self.ttl_ms]):
                lost.add(source_id)
        return lost

    async def release(self, worker_id: str, source_ids: list[str]) -> None:
        """A worker that stops cleanly hands its sources on at once instead of after the TTL."""
        for source_id in source_ids:
            await self._release(keys=[keys.source_lease(source_id)], args=[worker_id])

    async def write_state(self, source_id: str, state: dict[str, object]) -> None:
        """The source's state as its worker sees it, alive as long as a lease is."""
        state = {**state, "at": time.time()}
        await self.redis.set(keys.source_state(source_id), json.dumps(state), px=self.ttl_ms)

    async def states(self, source_ids: list[str]) -> dict[str, dict[str, object]]:
        """The states their workers wrote last; a source whose worker is gone has none."""
        if not source_ids:
            return {}
        texts = await self.redis.mget([keys.source_state(i) for i in source_ids])
        return {i: json.loads(t) for i, t in zip(source_ids, texts, strict=True) if t is not None}

    async def publish(self, source_id: str, message: str) -> None:
        """One viewer message, encoded once by the worker for every API node's viewers."""
        await self.redis.xadd(keys.source_out(source_id), {"m": message}, maxlen=OUT_LENGTH, approximate=True)

    async def last_message_id(self, source_id: str) -> str:
        """Where a new reader starts: after the newest message (a viewer starts at the current frame)."""
        return await self._newest_id(keys.source_out(source_id))

    async def _newest_id(self, stream: str) -> str:
        newest: list[tuple[bytes, object]] = await self.redis.xrevrange(stream, count=1)  # type: ignore[assignment]
        return newest[0][0].decode() if newest else "0-0"

    async def read(self, after: dict[str, str], block_ms: int) -> list[tuple[str, str, str]]:
        """Messages of these sources after the given ids, waiting up to ``block_ms`` for one:
        (source id, message id, message) in order per source."""
        streams = {keys.source_out(i): last for i, last in after.items()}
        entries = await self._xread(streams, OUT_LENGTH, block_ms)
        return [(source_id, entry_id, fields[b"m"].decode()) for source_id, entry_id, fields in entries]

    async def watch_overlay(self, source_id: str) -> None:
        """Someone here watches the source's overlay: its worker draws it for ``node_ttl_s`` more."""
        await self.redis.set(keys.source_overlay_watched(source_id), "1", px=self.ttl_ms)

    async def overlays_watched(self, source_ids: list[str]) -> set[str]:
        """Those of these sources whose overlay someone watches now."""
        if not source_ids:
            return set()
        flags = await self.redis.mget([keys.source_overlay_watched(i) for i in source_ids])
        return {i for i, flag in zip(source_ids, flags, strict=True) if flag is not None}

    async def publish_overlay(self, source_id: str, jpeg: bytes) -> None:
        """One overlay picture; the stream keeps ``OVERLAY_LENGTH`` and goes when nobody watches."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(keys.source_overlay(source_id), {"j": jpeg}, maxlen=OVERLAY_LENGTH, approximate=False)
            pipe.pexpire(keys.source_overlay(source_id), self.ttl_ms)
            await pipe.execute()

    async def last_overlay_id(self, source_id: str) -> str:
        """Where a relay of the overlay starts: after the newest picture (it may be a few seconds
        old: a new watcher waits for the next one, as in embedded mode)."""
        return await self._newest_id(keys.source_overlay(source_id))

    async def read_overlays(self, after: dict[str, str], block_ms: int) -> list[tuple[str, str, bytes]]:
        """Overlay pictures of these sources after the given ids, waiting up to ``block_ms``:
        (source id, picture id, JPEG) in order per source."""
        streams = {keys.source_overlay(i): last for i, last in after.items()}
        entries = await self._xread(streams, OVERLAY_LENGTH, block_ms)
        return [(source_id, entry_id, fields[b"j"]) for source_id, entry_id, fields in entries]

    async def _xread(
        self, streams: dict[str, str], count: int, block_ms: int
    ) -> list[tuple[str, str, dict[bytes, bytes]]]:
        """Entries of ``tdmi:source:ID:...`` streams: (source id, entry id, fields)."""
        if not streams:
            return []
        replies: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = await self.redis.xread(  # type: ignore[assignment]
            streams,  # type: ignore[arg-type]
            count=count,
            block=block_ms,
        )
        return [
            (stream.decode().split(":")[2], entry_id.decode(), fields)
            for stream, entries in replies
            for entry_id, fields in entries
        ]
