"""Faults of the server's own state against real servers: each is classified once (input, transient,
bug), transient ones are waited out, and every long-lived loop heals and keeps /readyz honest.

- A Redis that restarts empty (no persistence): the consumer group is created again by itself and
  a new job goes through; during the outage every node is not ready and a 503 says so with
  ``Retry-After``, without the Redis address.
- A Redis that refuses writes (out of memory) while it answers PING: the heartbeats fail, the
  nodes say so on /readyz after ``loop_stall_s``, and run again when Redis takes writes again.
- A server out of file descriptors: a valid job is retried (not failed as unreadable input) and
  done once descriptors are back.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tdmi.service.cluster import keys
from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess, running_server
from tests.helpers.waits import until
from tests.integration.cluster.conftest import Cluster, submit, wait_finished
from tests.integration.conftest import SynthVideo, make_synth_video

pytestmark = pytest.mark.slow
STALL_S = 2.0  # loop_stall_s of these servers
DEADLINE_S = 120.0  # for what a loaded 2-core CI machine must do in seconds; the bugs never do it


def _readyz(node: ServerProcess) -> httpx.Response:
    return httpx.get(f"{node.base}/readyz", timeout=10)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-faults"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Cluster]:
    """One API node and one worker on the module's own Redis (which the tests stop and start)."""
    nodes = Cluster(
        tmp_path_factory.mktemp("cluster-faults"), redis.url(0), {"TDMI_LOOP_STALL_S": str(STALL_S)}
    )
    try:
        nodes.start_api()
        nodes.start_worker("w1")
        yield nodes
    finally:
        nodes.stop()


def _not_ready_for(node: ServerProcess, reason: str) -> bool:
    """One /readyz answer: 503 with ``reason`` among its reasons."""
    answer = _readyz(node)
    return answer.status_code == 503 and reason in (answer.json().get("reason") or "")


def _restart_empty(redis: RedisServer) -> None:
    """What a Redis without persistence does on a restart: it comes back with no key at all."""
    redis.stop()
    for kept in (redis.directory / "appendonlydir", redis.directory / "dump.rdb"):
        shutil.rmtree(kept, ignore_errors=True) if kept.is_dir() else kept.unlink(missing_ok=True)
    redis.start()


@pytest.mark.redis
def test_redis_back_empty_gets_its_consumer_group_again_and_a_new_job_goes_through(
    cluster: Cluster, redis: RedisServer, synth_video: SynthVideo
) -> None:
    api, worker = cluster.apis[0], cluster.workers["w1"]
    finished = submit(api, synth_video)
    assert wait_finished(api, finished)["status"] == "done"  # the group was in use

    redis.stop()
    address = f"127.0.0.1:{redis.port}"
    for node in (api, worker):
        until(
            lambda node=node: _readyz(node).status_code == 503,
            "a node stayed ready without redis",
            DEADLINE_S,
        )
        reason = _readyz(node).json()["reason"]
        assert "redis" in reason and address not in reason and str(redis.port) not in reason
    for path in ("/v1/workers", "/v1/pose/" + "0" * 32):
        answer = httpx.get(f"{api.base}{path}", timeout=10)
        assert answer.status_code == 503 and answer.headers.get("retry-after") == "1", path
        assert str(redis.port) not in answer.text and answer.json()["error"] == "not_ready"

    _restart_empty(redis)
    # the nodes write their keys again at once (heartbeats, the group), but nothing brings back a
    # finished job's hash: its absence shows the restart lost everything
    assert not redis.client(0).exists(keys.job(finished))
    until(
        lambda: _readyz(api).status_code == 200 and _readyz(worker).status_code == 200,
        "not ready again",
        DEADLINE_S,
    )
    job = submit(api, synth_video)
    assert wait_finished(api, job, DEADLINE_S)["status"] == "done"  # the bug: queued forever, silently
    assert "consumer group 'workers' was missing; created again" in worker.log()
    assert [w["worker_id"] for w in cluster.wait_workers({"w1"})] == ["w1"]


@pytest.mark.redis
def test_a_redis_refusing_writes_makes_its_nodes_not_ready_and_they_heal(
    cluster: Cluster, redis: RedisServer, synth_video: SynthVideo
) -> None:
    """PING still answers, so only the loops can tell: the heartbeats fail on every write. They used
    to die on the first such error (not a connection error): the worker left the cluster for good
    and /readyz stayed 200."""
    api, worker = cluster.apis[0], cluster.workers["w1"]
    client = redis.client(0)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    uploads = cluster.data_dir / "uploads"
    before = set(uploads.iterdir())
    try:
        with synth_video.path.open("rb") as f:  # a job meets the refusal: a 503 to retry, not a 500
            refused = httpx.post(
                f"{api.base}/v1/pose",
                files={"file": ("clip.mp4", f, "video/mp4")},
                data={"boxes": json.dumps(synth_video.boxes())},
                timeout=60,
            )
        assert refused.status_code == 503 and refused.headers.get("retry-after") == "1", refused.text
        assert refused.json()["error"] in ("redis_refusing", "not_ready")
        assert set(uploads.iterdir()) <= before  # the refused job's upload did not stay behind
        for node, loop in ((worker, "worker heartbeat"), (api, "api heartbeat")):
            stalled = f"{loop} failing for over {STALL_S:g} s: the job store (redis) refuses writes"
            # the reason is read from the same 503 that ends the wait: a node may be not ready for a
            # moment for another reason first (a refused request), and ready again in between
            took_s = until(
                lambda node=node, stalled=stalled: _not_ready_for(node, stalled),
                f"{loop} failing, still ready",
                DEADLINE_S,
            )
            assert took_s < STALL_S + 30
    finally:
        client.config_set("maxmemory", 0)
    for node in (api, worker):
        until(lambda node=node: _readyz(node).status_code == 200, "a node stayed not ready", DEADLINE_S)
    assert [w["worker_id"] for w in cluster.wait_workers({"w1"})] == ["w1"]  # registered again
    assert wait_finished(api, submit(api, synth_video))["status"] == "done"
    for node in (api, worker):
        assert "runs again after" in node.log()


# -- out of file descriptors -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> SynthVideo:
    return make_synth_video(tmp_path_factory.mktemp("synth-faults"), frames=120, seed=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[ServerProcess]:
    """Embedded; one job at a time and one clip per batch, so a job is caught running."""
    env = {"TDMI_MAX_RUNNING_JOBS": "1", "TDMI_MAX_BATCH": "1", "TDMI_DETECTOR": "none"}
    with running_server(tmp_path_factory.mktemp("data-faults"), tiny_checkpoint, env=env) as proc:
        yield proc


def _post(client: httpx.Client, video: SynthVideo, **fields: str) -> str:
    with video.path.open("rb") as f:
        reply = client.post(
            "/v1/pose",
            files={"file": ("clip.mp4", f, "video/mp4")},
            data={"boxes": json.dumps(video.boxes()), **fields},
        )
    assert reply.status_code == 202, reply.text
    return str(reply.json()["job_id"])


def _no_descriptor_left(pid: int) -> tuple[int, int]:
    """Lower ``pid``'s descriptor limit to its lowest free number: every open, accept or pipe of
    the process fails with EMFILE from now on. Answers the limits to restore."""
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    taken = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = min(set(range(max(taken) + 2)) - taken)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
    return limits


def test_a_valid_job_met_by_a_server_out_of_descriptors_is_retried_and_done(
    server: ServerProcess, long_clip: SynthVideo, synth_video: SynthVideo
) -> None:
    """The issue's case: it failed for good as ``not a readable video file (Too many open files)``."""
    pid = server.proc.pid
    # one kept-alive connection: the server cannot accept a new one while it has no descriptor
    with httpx.Client(base_url=server.base, timeout=30) as client:

        def status(job: str) -> dict:
            return dict(client.get(f"/v1/pose/{job}").json())

        running = _post(client, long_clip, render="true")
        until(lambda: status(running)["status"] == "running", "the first job never started", DEADLINE_S)
        waiting = _post(client, synth_video)  # behind it: the runner opens its file later
        limits = _no_descriptor_left(pid)
        try:
            assert (status(running)["status"], status(waiting)["status"]) == ("running", "queued")
            seen: list[dict] = []

            def retried() -> bool:
                seen.append(status(waiting))
                assert seen[-1]["status"] in ("queued", "running"), seen[-1]
                return (seen[-1]["error"] or "").startswith("retry ")

            until(retried, "the job was never retried", DEADLINE_S)
            assert seen[-1]["error"].startswith("retry 1 of 20 after a transient server fault: ")
            assert seen[-1]["error"].endswith("the server is out of file descriptors for now")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        for job in (waiting, running):
            done = wait_finished(server, job, DEADLINE_S)
            assert (done["status"], done["error"]) == ("done", None)
        frames = client.get(f"/v1/pose/{waiting}/result").json()["frames"]
        assert len(frames) == synth_video.frames
    log = server.log()
    assert "out of file descriptors" in log and "unsupported_media" not in log
