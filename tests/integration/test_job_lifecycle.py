"""Jobs against real servers, embedded (SQLite) and as a cluster (API node + worker over a real
redis-server): ownership by API key, DELETE with the files, uploads removed when a job ends,
retention, data-dir usage in /metrics, a full disk at upload, and the poison-job guard."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess
from tests.helpers.synth import SynthVideo, make_synth_video
from tests.integration.cluster.conftest import Cluster

pytestmark = pytest.mark.slow
_databases = itertools.count(9)  # cluster tests count up from 1, the queue suite uses 15
ALICE, BOB, ADMIN = "alice-key-1", "bob-key-2", "admin-key-3"
KEYS = {"TDMI_API_KEYS": json.dumps([ALICE, BOB]), "TDMI_ADMIN_API_KEYS": json.dumps([ADMIN])}
SLOW = {"TDMI_MAX_BATCH": "1", "TDMI_MAX_RUNNING_JOBS": "1", "TDMI_DETECTOR": "none"}


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass
class Node:
    """Where clients talk to (the embedded server, or the cluster's API node) and the data dir."""

    mode: str
    base: str
    data_dir: Path
    redis: RedisServer | None = None
    db: int = 0

    def submit(self, video: SynthVideo, key: str | None = ALICE, **fields: str) -> str:
        with video.path.open("rb") as f:
            reply = httpx.post(
                f"{self.base}/v1/pose",
                files={"file": ("clip.mp4", f, "video/mp4")},
                data={"boxes": json.dumps(video.boxes()), **fields},
                headers=_auth(key),
                timeout=60,
            )
        assert reply.status_code == 202, reply.text
        return reply.json()["job_id"]

    def get(self, path: str, key: str | None = ALICE) -> httpx.Response:
        return httpx.get(f"{self.base}/v1/pose/{path}", headers=_auth(key), timeout=30)

    def delete(self, job_id: str, key: str | None = ALICE) -> httpx.Response:
        return httpx.delete(f"{self.base}/v1/pose/{job_id}", headers=_auth(key), timeout=30)

    def wait(self, job_id: str, key: str | None = ALICE, status: tuple[str, ...] = ("done",)) -> dict:
        deadline = time.monotonic() + 600  # a bound for a loaded CI machine, not a speed test
        while time.monotonic() < deadline:
            reply = self.get(job_id, key).json()
            if reply["status"] in status:
                return reply
            assert reply["status"] in ("queued", "running"), reply
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never reached {status}")

    def stored(self, job_id: str) -> bool:
        """Whether the job's row (SQLite) or hash (Redis) still exists, read from the storage itself."""
        if self.redis is not None:
            return bool(self.redis.client(self.db).exists(f"tdmi:job:{job_id}"))
        with contextlib.closing(sqlite3.connect(self.data_dir / "jobs.sqlite3")) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] == 1

    def column(self, job_id: str, name: str) -> str | None:
        """One stored field of the job, read from the storage itself."""
        if self.redis is not None:
            value = self.redis.client(self.db).hget(f"tdmi:job:{job_id}", name)
            return None if value is None else value.decode()
        with contextlib.closing(sqlite3.connect(self.data_dir / "jobs.sqlite3")) as db:
            row = db.execute(f"SELECT {name} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def files(self, job_id: str) -> list[Path]:
        return sorted(p for p in self.data_dir.rglob(f"{job_id}*") if p.is_file())

    def data_dir_bytes(self) -> float:
        for line in httpx.get(f"{self.base}/metrics", timeout=30).text.splitlines():
            if line.startswith("tdmi_data_dir_bytes "):
                return float(line.split()[-1])
        raise AssertionError("tdmi_data_dir_bytes is not in /metrics")


def _until(predicate: Callable[[], bool], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> SynthVideo:
    """Long enough (48 frames, one clip per batch) that a job is surely still running when deleted."""
    return make_synth_video(tmp_path_factory.mktemp("synth-48"), frames=48, seed=5)


@pytest.fixture
def start_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[Callable[[str, dict[str, str]], Node]]:
    """Start a node of either mode with extra settings; everything started is stopped after the test."""
    stops: list[Callable[[], object]] = []

    def start(mode: str, env: dict[str, str]) -> Node:
        root = tmp_path_factory.mktemp(mode)
        model = ["--model", f"tdmi-tiny={tiny_checkpoint}"]
        if mode == "embedded":
            server = ServerProcess(root / "data", *model, env={**SLOW, **env})
            stops.append(server.stop)
            server.wait_ready()
            return Node(mode, server.base, root / "data")
        redis: RedisServer = request.getfixturevalue("redis_server")
        db = next(_databases)
        redis.client(db).flushdb()
        cluster = Cluster(root, redis.url(db), {**SLOW, **env})
        stops.append(cluster.stop)
        api = cluster.start_api()
        worker = ServerProcess(cluster.data_dir, *model, env=cluster.env(), command="worker")
        cluster.workers["w"] = worker
        worker.wait_ready()
        _until(
            lambda: bool(
                httpx.get(f"{api.base}/v1/models", headers=_auth(ADMIN), timeout=5).json()["models"]
            ),
            "the API node never saw the worker's model",
        )
        return Node(mode, api.base, cluster.data_dir, redis, db)

    yield start
    for stop in reversed(stops):
        stop()


MODES = pytest.mark.parametrize("mode", ["embedded", pytest.param("cluster", marks=pytest.mark.redis)])


@MODES
def test_a_job_belongs_to_the_key_that_created_it(
    mode: str, start_node: Callable[..., Node], synth_video: SynthVideo
) -> None:
    node = start_node(mode, KEYS)
    job = node.submit(synth_video, ALICE)
    node.wait(job, ALICE)
    for path in (job, f"{job}/result", f"{job}/video"):
        reply = node.get(path, BOB)
        assert reply.status_code == 404 and reply.json()["error"] == "not_found", path
    assert node.get(job, None).status_code == 401
    assert node.delete(job, BOB).status_code == 404
    assert node.get(f"{job}/result", ALICE).status_code == 200
    assert node.get(job, ADMIN).json()["status"] == "done"  # an admin key sees every key's jobs
    admin_job = node.submit(synth_video, ADMIN)
    assert node.get(admin_job, ALICE).status_code == 404
    assert node.delete(job, ADMIN).status_code == 200
    assert node.get(job, ALICE).status_code == 404
    assert (node.stored(job), node.stored(admin_job)) == (False, True)
    owner = node.column(admin_job, "owner")  # an id of the key, never the key itself
    assert owner is not None and len(owner) == 32 and ADMIN not in owner


@MODES
def test_delete_removes_a_finished_job_with_its_files_and_a_running_one_once_it_stopped(
    mode: str, start_node: Callable[..., Node], synth_video: SynthVideo, long_clip: SynthVideo
) -> None:
    node = start_node(mode, {})
    done = node.submit(synth_video, None, render="true")
    node.wait(done, None)
    uploaded = functools.partial(node.files, done)
    _until(lambda: len(uploaded()) == 2, "the upload stayed after its job ended")
    files = node.files(done)
    assert [p.parent.name for p in files] == ["results", "videos"]
    assert node.data_dir_bytes() >= sum(p.stat().st_size for p in files)
    reply = node.delete(done, None)
    assert reply.status_code == 200 and reply.json()["status"] == "done"
    assert node.get(done, None).status_code == 404 and node.delete(done, None).status_code == 404
    assert node.files(done) == [] and not node.stored(done)

    running = node.submit(long_clip, None, render="true")
    node.wait(running, None, status=("running",))
    reply = node.delete(running, None)
    assert reply.status_code == 200 and reply.json()["status"] == "cancelled"
    assert node.get(running, None).status_code == 404  # gone for clients at once
    _until(lambda: not node.stored(running) and node.files(running) == [], "the deleted job's files stayed")
    again = node.submit(synth_video, None)  # the runner goes on
    node.wait(again, None)


@MODES
def test_retention_removes_old_finished_jobs_and_kept_uploads(
    mode: str, start_node: Callable[..., Node], synth_video: SynthVideo
) -> None:
    retention = {
        "TDMI_KEEP_UPLOADS": "true",
        "TDMI_JOB_RETENTION_HOURS": str(2 / 3600),  # two seconds
        "TDMI_JOB_SWEEP_INTERVAL_S": "0.5",
    }
    node = start_node(mode, retention)
    job = node.submit(synth_video, None)
    node.wait(job, None)
    assert "uploads" in [p.parent.name for p in node.files(job)]  # kept, as asked
    _until(lambda: node.get(job, None).status_code == 404, "the finished job was never removed")
    _until(lambda: node.files(job) == [] and not node.stored(job), "its files stayed")


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode:
        pytest.skip("mounting a tmpfs needs root; test_an_upload_below_the_free_space_threshold covers 507")


def test_a_full_disk_answers_507_and_loses_nothing_else(
    tmp_path: Path, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    data = tmp_path / "data"
    uploads = data / "uploads"
    _mount_tmpfs(uploads, "8k")
    server = ServerProcess(data, "--model", f"tdmi-tiny={tiny_checkpoint}", env={"TDMI_MIN_FREE_BYTES": "0"})
    try:
        server.wait_ready()
        video = synth_video.path.read_bytes()
        assert len(video) > 8 * 1024, "the clip must not fit"
        boundary = "tdmi-test-boundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'.encode()
            + video
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        declared = httpx.post(f"{server.base}/v1/pose", content=body, headers=headers, timeout=30)
        assert declared.status_code == 507 and declared.json()["error"] == "insufficient_storage"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the disk fills while writing
            yield from (body[i : i + 8192] for i in range(0, len(body), 8192))

        chunked = httpx.post(f"{server.base}/v1/pose", content=chunks(), headers=headers, timeout=30)
        assert chunked.status_code == 507 and chunked.json() == declared.json()
        assert list(uploads.iterdir()) == []  # the partial upload is gone
        assert httpx.get(f"{server.base}/readyz", timeout=5).status_code == 200
        assert "Traceback" not in server.log()
    finally:
        server.stop()
        subprocess.run(["umount", str(uploads)], check=True)


def test_an_upload_below_the_free_space_threshold_is_refused_with_507(
    tmp_path: Path, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    env = {"TDMI_MIN_FREE_BYTES": str(2**62)}  # more than any disk has free
    server = ServerProcess(tmp_path / "data", "--model", f"tdmi-tiny={tiny_checkpoint}", env=env)
    try:
        server.wait_ready()
        node = Node("embedded", server.base, tmp_path / "data")
        with synth_video.path.open("rb") as f:
            reply = httpx.post(f"{node.base}/v1/pose", files={"file": ("v.mp4", f)}, timeout=30)
        assert reply.status_code == 507 and reply.json()["error"] == "insufficient_storage"
        assert list((node.data_dir / "uploads").iterdir()) == []
    finally:
        server.stop()


def test_a_job_that_kills_its_server_fails_after_the_attempts_instead_of_crash_looping(
    tmp_path: Path, tiny_checkpoint: Path, long_clip: SynthVideo
) -> None:
    """Each run of the job ends with the process killed (as a native crash would); at the third
    start the guard fails it. SIGKILL is the real thing: no handler, no clean-up, no requeue."""
    env = {**SLOW, "TDMI_JOB_MAX_ATTEMPTS": "2"}
    model = ["--model", f"tdmi-tiny={tiny_checkpoint}"]
    job = ""
    for run in range(3):
        server = ServerProcess(tmp_path / "data", *model, env=env)
        try:
            server.wait_ready()
            node = Node("embedded", server.base, tmp_path / "data")
            if run == 0:
                job = node.submit(long_clip, None)
            if run < 2:  # kill the process once this run has counted its attempt
                started = functools.partial(node.column, job, "attempts")
                _until(lambda started=started, run=run: started() == str(run + 1), "the run never started")
                node.wait(job, None, status=("running",))
                assert server.stop(signal.SIGKILL) == -signal.SIGKILL
                continue
            failed = node.wait(job, None, status=("failed",))
            assert failed["error"] == "the job crashed the worker 2 times"
            metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
            assert 'tdmi_errors_total{kind="job_crashed"} 1.0' in metrics
            fresh = node.submit(long_clip, None)  # the server goes on with other work
            node.wait(fresh, None)
        finally:
            server.stop()
