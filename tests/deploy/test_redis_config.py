"""deploy/redis.conf loaded by a real redis-server: it parses, persists to its append-only file,
and refuses to evict. Only the data directory, port and bind address are changed for the test."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.deploy.files import REPO
from tests.helpers.server import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by .ci/run"
    port = free_port()
    # redis.conf's `dir /data` (the volume) is acted on as it is read, so it alone is rewritten
    config = (REPO / "deploy" / "redis.conf").read_text()
    assert config.count("\ndir /data\n") == 1
    local_config = tmp_path / "redis.conf"
    local_config.write_text(config.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    process = subprocess.Popen(
        [binary, str(local_config), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield client, tmp_path
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def test_redis_accepts_the_config_and_persists_writes_to_the_append_only_file(
    server: tuple[redis.Redis, Path],
) -> None:
    client, data_dir = server
    settings = {key: client.config_get(key)[key] for key in ("appendonly", "appendfsync", "maxmemory-policy")}
    assert settings == {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}
    client.xadd("probe", {"job": "1"})
    deadline = time.monotonic() + 10
    while not any(data_dir.glob("appendonlydir/*.incr.aof")):  # the file Redis 7 appends to
        assert time.monotonic() < deadline, "no append-only file appeared"
        time.sleep(0.05)
    client.execute_command("BGREWRITEAOF")  # a real write path, not just a created file
    deadline = time.monotonic() + 10
    while client.info("persistence")["aof_rewrite_in_progress"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
