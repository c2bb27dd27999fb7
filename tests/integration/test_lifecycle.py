"""Restart with a job in flight, graceful shutdown during work (each test stops its own real
servers), and the bind guard. API keys are tested in-process (tests/integration/http_layer)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.server import ServerProcess
from tests.helpers.synth import SynthVideo

# slow the worker down (one clip per batch) so that a job is surely still running when we stop
SLOW = {"TDMI_MAX_BATCH": "1", "TDMI_MAX_RUNNING_JOBS": "1"}


def _submit(server: ServerProcess, video: SynthVideo) -> httpx.Response:
    with video.path.open("rb") as f:
        return httpx.post(
            f"{server.base}/v1/pose",
            files={"file": ("v.mp4", f)},
            data={"boxes": json.dumps(video.boxes())},
            timeout=60,
        )


def _status(server: ServerProcess, job_id: str) -> dict:
    return httpx.get(f"{server.base}/v1/pose/{job_id}", timeout=10).json()


def _wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "killed"])
def test_a_job_in_flight_runs_again_after_a_restart(
    tmp_path: Path, tiny_checkpoint: Path, synth_video: SynthVideo, stop_signal: int
) -> None:
    model = f"tdmi-tiny={tiny_checkpoint}"
    first = ServerProcess(tmp_path, "--model", model, env=SLOW)
    first.wait_ready()
    job = _submit(first, synth_video).json()["job_id"]
    _wait_for(
        lambda: (
            _status(first, job)["progress"]["frames_done"] > 0 or _status(first, job)["status"] != "queued"
        )
    )
    assert _status(first, job)["status"] == "running"
    code = first.stop(stop_signal)
    if stop_signal == signal.SIGTERM:  # uvicorn re-raises the signal once it has shut down cleanly
        assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in first.log()
    else:
        assert code == -signal.SIGKILL

    second = ServerProcess(tmp_path, "--model", model, env=SLOW)
    try:
        second.wait_ready()
        _wait_for(lambda: _status(second, job)["status"] == "done", timeout=120)
        result = httpx.get(f"{second.base}/v1/pose/{job}/result").json()
        assert [f["index"] for f in result["frames"]] == list(range(synth_video.frames))
    finally:
        second.stop()


@pytest.mark.slow
def test_shutdown_during_work_closes_streams_with_1012_and_exits_cleanly(
    tmp_path: Path, tiny_checkpoint: Path, synth_video: SynthVideo
) -> None:
    server = ServerProcess(tmp_path, "--model", f"tdmi-tiny={tiny_checkpoint}", env=SLOW)
    server.wait_ready()
    job = _submit(server, synth_video).json()["job_id"]
    with connect(f"{server.ws_base}/v1/stream") as ws:
        ws.send(json.dumps({"type": "config"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=30)
        assert ws.close_code == 1012  # "service restart": reconnect
    assert server.stop() in (0, -signal.SIGTERM)
    log = server.log()
    assert "Application shutdown complete" in log and "Traceback" not in log, log
    # the job was requeued, not lost: a new server finishes it
    again = ServerProcess(tmp_path, "--model", f"tdmi-tiny={tiny_checkpoint}")
    try:
        again.wait_ready()
        _wait_for(lambda: _status(again, job)["status"] == "done", timeout=120)
    finally:
        again.stop()


def test_listening_beyond_loopback_without_keys_is_refused() -> None:
    command = [sys.executable, "-m", "tdmi.service.cli", "serve", "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("tdmi: error: refusing to listen on 0.0.0.0")
