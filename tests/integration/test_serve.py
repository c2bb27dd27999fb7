"""``tdmi serve`` as users start it: the default model on a real server, what its start-up tells a
person (the URL to open, each model's runtime, a first start's one-time export, in a few lines),
and a missing accelerator reported on ``/readyz`` by the real node (in this process: it fails
before loading anything)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
import torch

from tdmi.service.config import Settings
from tdmi.service.main import create_app
from tests.helpers.in_process import TestClient
from tests.helpers.server import ServerProcess

START_UP_LINES = 25  # a first start logged 180 lines, 170 of them the ONNX exporter's
LIBRARY_LINE = re.compile(r"^\S+ \S+ \w+ (onnxscript|onnx_ir|onnx|torch|PIL|httpx)\b", re.MULTILINE)


def _start_up(log: str) -> list[str]:
    """The lines a start logged, up to the one saying it is done."""
    return log[: log.index("Application startup complete")].splitlines()


def test_serve_loads_the_default_model(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base}/readyz").status_code == 200
    (model,) = httpx.get(f"{server.base}/v1/models").json()["models"]
    assert model["name"] == "tdmi-tiny" and model["num_frames"] == 5
    assert model["checkpoint"] == "tdmi_tiny_synth.pt"  # the demo checkpoint, shipped in the package
    assert model["skeleton"]["joints"][2] == "head_top"


def test_the_start_up_says_where_to_open_it_and_what_runs_in_a_few_lines(server: ServerProcess) -> None:
    log = server.log()
    url = f"http://127.0.0.1:{server.port}"
    assert f"ready: open {url}/ (API docs: {url}/docs)" in log
    # the test suite pins torch (tests/conftest.py)
    assert "model tdmi-tiny: PyTorch on cpu (backend torch)" in log
    assert "  detector = hog" in log  # the settings that differ from their defaults, one a line
    assert len(_start_up(log)) < START_UP_LINES


@pytest.mark.slow
def test_a_first_start_announces_its_one_time_export_and_the_port_it_picked(tmp_path: Path) -> None:
    """``--port 0`` and the default backend (ONNX Runtime on a CPU) with an empty cache."""
    node = ServerProcess(
        tmp_path, "--port", "0", env={"TDMI_BACKEND": "auto", "TDMI_DETECTOR": "hog"}, pass_port=False
    )
    try:
        deadline = time.monotonic() + 600
        while not (ready := re.search(r"ready: open (http://127\.0\.0\.1:(\d+))/ ", node.log())):
            assert node.proc.poll() is None and time.monotonic() < deadline, node.log()
            time.sleep(0.2)
        assert int(ready[2]) != 0
        assert httpx.get(f"{ready[1]}/readyz", timeout=10).status_code == 200  # the port it logged
        log = node.log()
    finally:
        node.stop()
    assert "model tdmi-tiny: ONNX Runtime on cpu (backend auto), " in log
    assert "checkpoint tdmi_tiny_synth.pt" in log
    assert f"exporting tdmi-tiny to ONNX once (cached in {tmp_path / 'onnx'})" in log
    assert re.search(r"exported tdmi-tiny to ONNX in \d+ s", log)
    assert not LIBRARY_LINE.search(log), LIBRARY_LINE.findall(log)
    assert len(_start_up(log)) < START_UP_LINES, log


def test_missing_accelerator_is_not_ready_with_a_reason(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, device="cuda:0"))
    with TestClient(app, base_url="http://localhost") as client:
        reply = client.get("/readyz")
        assert client.get("/healthz").status_code == (200 if torch.cuda.is_available() else 503)
    if torch.cuda.is_available():
        assert reply.status_code == 200
    else:
        assert reply.status_code == 503
        assert "CUDA is not available" in reply.json()["reason"]
