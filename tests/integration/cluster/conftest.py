"""A real redis-server for the session, and clusters of real ``tdmi serve --redis`` / ``tdmi worker``
processes on the CPU. Each cluster gets its own Redis database, so tests do not see each other's jobs."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import httpx
import pytest

from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess
from tests.helpers.synth import SynthVideo, make_synth_video

_databases = itertools.count(1)

CLUSTER_ENV = {
    "TDMI_NODE_HEARTBEAT_S": "0.25",
    "TDMI_NODE_TTL_S": "2",
    "TDMI_JOB_CLAIM_IDLE_S": "3",
    "TDMI_MAX_RUNNING_JOBS": "1",  # one job per worker at a time: queued jobs spread over workers
    "TDMI_STALENESS_MS": "60000",  # a 2-core CI machine is slow: no live drops for staleness
    "TDMI_DETECTOR": "none",  # the tests send boxes
}


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> SynthVideo:
    """Long enough (64 frames) that a worker can be killed in the middle of its job."""
    return make_synth_video(tmp_path_factory.mktemp("synth-long"), frames=64, seed=11)


@pytest.fixture(scope="session")
def jpeg_frames(synth_video: SynthVideo) -> list[bytes]:
    with av.open(str(synth_video.path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]


class Cluster:
    """API nodes and workers sharing one data directory and one Redis database."""

    def __init__(self, root: Path, redis_url: str, env: dict[str, str] | None = None):
        self.root, self.redis_url = root, redis_url
        self.extra_env = env or {}  # settings of this cluster's nodes beyond CLUSTER_ENV
        self.data_dir = root / "shared"
        self.apis: list[ServerProcess] = []
        self.workers: dict[str, ServerProcess] = {}

    def env(self) -> dict[str, str]:
        return {**CLUSTER_ENV, **self.extra_env, "TDMI_REDIS_URL": self.redis_url}

    def start_api(self) -> ServerProcess:
        api = ServerProcess(self.data_dir, env=self.env())
        api.wait_ready()
        self.apis.append(api)
        return api

    def start_worker(self, name: str) -> ServerProcess:
        worker = ServerProcess(self.data_dir, "--worker-id", name, env=self.env(), command="worker")
        worker.wait_ready()
        self.workers[name] = worker
        return worker

    def wait_workers(self, names: set[str], timeout: float = 30) -> list[dict]:
        """Until ``GET /v1/workers`` on the first API node lists exactly these workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = httpx.get(f"{self.apis[0].base}/v1/workers", timeout=5).json()["workers"]
            if {w["worker_id"] for w in listed} == names:
                return listed
            time.sleep(0.1)
        raise AssertionError(f"workers {names} not listed; last: {listed}")

    def stop(self) -> None:
        for proc in [*self.workers.values(), *self.apis]:
            proc.stop()


@pytest.fixture
def make_cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(redis: RedisServer | None = None, **env: str) -> Cluster:
        server = redis or redis_server
        cluster = Cluster(tmp_path_factory.mktemp("cluster"), server.url(next(_databases)), env)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


def submit(api: ServerProcess, video: SynthVideo, **fields: str) -> str:
    with video.path.open("rb") as f:
        reply = httpx.post(
            f"{api.base}/v1/pose",
            files={"file": ("clip.mp4", f, "video/mp4")},
            data={"boxes": json.dumps(video.boxes()), **fields},
            timeout=60,
        )
    assert reply.status_code == 202, reply.text
    return reply.json()["job_id"]


def wait_finished(api: ServerProcess, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{api.base}/v1/pose/{job_id}", timeout=5).json()
        if status["status"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished: {status}")


def result(api: ServerProcess, job_id: str) -> dict:
    reply = httpx.get(f"{api.base}/v1/pose/{job_id}/result", timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()
