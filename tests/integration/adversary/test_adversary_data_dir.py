"""The data directory against real servers: one embedded server owns it (a second exits 2 and
strands nothing), and what a killed run leaves behind is swept when the next one starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess, free_port
from tests.helpers.waits import until
from tests.integration.cluster.conftest import Cluster, submit
from tests.integration.conftest import SynthVideo, make_synth_video

pytestmark = pytest.mark.slow
# one clip per batch, boxes given: a job runs long enough to be caught running
SLOW_JOBS = {"TDMI_MAX_BATCH": "1", "TDMI_MAX_RUNNING_JOBS": "1", "TDMI_DETECTOR": "none"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SynthVideo:
    return make_synth_video(tmp_path_factory.mktemp("synth-48"), frames=48, seed=5)


def _status(base: str, job: str) -> str:
    return httpx.get(f"{base}/v1/pose/{job}", timeout=30).json()["status"]


def test_a_second_server_on_the_same_data_dir_exits_2_and_the_first_keeps_its_running_job(
    tmp_path: Path, tiny_checkpoint: Path, clip: SynthVideo
) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data, "--model", f"tdmi-tiny={tiny_checkpoint}", env=SLOW_JOBS)
    try:
        first.wait_ready()
        job = submit(first, clip)
        until(lambda: _status(first.base, job) == "running", "the job never started")
        second = subprocess.run(
            [sys.executable, "-m", "tdmi.service.cli", "serve", "--port", str(free_port())]
            + ["--data-dir", str(data), "--model", f"tdmi-tiny={tiny_checkpoint}"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TDMI_DEVICE": "cpu"},
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and str(data.resolve()) in lines[0] and f"pid {first.proc.pid}" in lines[0]
        until(lambda: _status(first.base, job) == "done", "the first server's job was stranded")
    finally:
        first.stop()


def test_what_a_killed_run_leaves_is_swept_at_the_next_start_and_the_job_still_finishes(
    tmp_path: Path, tiny_checkpoint: Path, clip: SynthVideo
) -> None:
    data = tmp_path / "data"
    model = ["--model", f"tdmi-tiny={tiny_checkpoint}"]
    server = ServerProcess(data, *model, env=SLOW_JOBS)
    try:
        server.wait_ready()
        job = submit(server, clip, render="true")
        # killed while its overlay is being written: the run leaves its .part file
        until(lambda: any((data / "videos").glob(f".{job}.*.part")), "the overlay was never started")
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        server.stop()
    killed_run = [p.name for p in (data / "videos").glob(f".{job}.*.part")]
    lost_upload = data / "uploads" / ("0" * 32 + ".mp4")  # an upload whose job was never created
    lost_upload.write_bytes(b"\x00" * 1024)

    server = ServerProcess(data, *model, env=SLOW_JOBS)
    try:
        server.wait_ready()
        assert not lost_upload.exists()
        assert killed_run and not any((data / "videos" / name).exists() for name in killed_run)
        until(lambda: _status(server.base, job) == "done", "the killed job never finished")
        leftover = [p.name for folder in ("uploads", "results", "videos") for p in (data / folder).iterdir()]
        result = httpx.get(f"{server.base}/v1/pose/{job}", timeout=30).json()
        assert result["status"] == "done"
        assert len(leftover) == 2 and all(name.startswith(job) for name in leftover), leftover
    finally:
        server.stop()


@pytest.mark.redis
def test_a_cluster_sweeps_uploads_whose_jobs_redis_no_longer_knows(tmp_path: Path) -> None:
    """A Redis that restarts empty forgets its jobs; their uploads stay on the shared disk until the
    API node's retention task finds that no job reads them (older than the grace only)."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {"TDMI_JOB_SWEEP_INTERVAL_S": "0.5", "TDMI_LEFTOVER_GRACE_S": "600"}
    cluster = Cluster(tmp_path / "cluster", redis.url(0), env)
    try:
        uploads = cluster.data_dir / "uploads"
        uploads.mkdir(parents=True)
        forgotten = uploads / f"{'a' * 32}.mp4"
        forgotten.write_bytes(b"\x00" * 4096)
        past = time.time() - 3600
        os.utime(forgotten, (past, past))
        arriving = uploads / f"{'b' * 32}.mp4"  # as young as an upload in progress
        arriving.write_bytes(b"\x00" * 4096)
        cluster.start_api()
        until(lambda: not forgotten.exists(), "the forgotten upload stayed", timeout=120)
        time.sleep(1.5)  # three more sweeps
        assert arriving.exists()
    finally:
        cluster.stop()
        redis.stop()
