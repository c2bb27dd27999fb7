"""Several nodes on one host: an API node and two workers on their default ports (only the base
port is the test's), and a node whose port is taken stops at once, naming the flag, outside the
cluster. Real redis-server, real ``tdmi`` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest
import redis as redis_client

from tdmi.service.cluster import keys
from tests.helpers.server import ServerProcess, free_port
from tests.integration.cluster.conftest import Cluster

pytestmark = pytest.mark.redis


def _free_run(length: int) -> int:
    """A base port such that base .. base + length - 1 are all free on loopback now."""
    while True:
        base = free_port()
        if base + length > 65535:
            continue
        probes = [socket.socket() for _ in range(length)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


def _run_node(cluster: Cluster, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A node that is expected to stop by itself (not a ``ServerProcess``: it never serves)."""
    return subprocess.run(
        [sys.executable, "-m", "tdmi.service.cli", *args, "--data-dir", str(cluster.data_dir)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_api_node_and_two_workers_share_a_host_and_a_taken_port_stops_a_node_outside(make_cluster) -> None:
    cluster = make_cluster()
    base = _free_run(3)
    env = {**cluster.env(), "TDMI_BASE_PORT": str(base)}
    api = ServerProcess(cluster.data_dir, env=env, port=base, pass_port=False)
    cluster.apis.append(api)
    api.wait_ready()
    for index in (0, 1):  # cpu:N stands in for cuda:N on this machine: the port follows the index
        worker = ServerProcess(
            cluster.data_dir,
            "--worker-id",
            f"w{index}",
            "--device",
            f"cpu:{index}",
            env=env,
            port=base + 1 + index,
            command="worker",
            pass_port=False,
        )
        cluster.workers[f"w{index}"] = worker
        worker.wait_ready()
    listed = cluster.wait_workers({"w0", "w1"})
    assert {w["device"] for w in listed} == {"cpu:0", "cpu:1"}
    for port in (base, base + 1, base + 2):
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200

    # a third worker on device index 1 wants w1's port; a second API node wants the API node's
    late_worker = _run_node(cluster, env, "worker", "--worker-id", "late", "--device", "cpu:1")
    late_api = _run_node(cluster, env, "serve")
    for stopped, port in ((late_worker, base + 2), (late_api, base)):
        assert stopped.returncode == 2
        lines = (stopped.stdout + stopped.stderr).strip().splitlines()
        assert len(lines) == 1, lines  # nothing before it: no settings, no model, no cluster
        assert lines[0].startswith(f"tdmi: error: port {port} on 127.0.0.1 is in use")
        assert "--port" in lines[0]
    listed = httpx.get(f"{api.base}/v1/workers", timeout=5).json()["workers"]
    assert {w["worker_id"] for w in listed} == {"w0", "w1"}
    redis = redis_client.Redis.from_url(cluster.redis_url)
    assert b"late" not in redis.smembers(keys.WORKERS)  # it never registered, even for a moment
    assert not [key for key in redis.scan_iter("tdmi:*") if b"late" in key]
