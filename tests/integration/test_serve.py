"""``tdmi serve`` as users start it: a real uvicorn process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "tdmi.service.cli", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "server exited") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture
def server() -> Iterator[str]:
    proc, base = _start()
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def test_serve_loads_the_default_model(server: str) -> None:
    assert httpx.get(f"{server}/readyz").status_code == 200
    models = httpx.get(f"{server}/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["tdmi-tiny"]
    assert models[0]["num_frames"] == 5
    assert models[0]["skeleton"]["joints"][2] == "head_top"
    assert (
        httpx.get(f"{server}/openapi.json").json()["paths"]["/v1/models"]["get"]["operationId"]
        == "list_models"
    )


def test_missing_accelerator_is_not_ready_with_a_reason() -> None:
    proc, base = _start("--device", "cuda:0")
    try:
        reply = httpx.get(f"{base}/readyz")
        if torch.cuda.is_available():
            assert reply.status_code == 200
        else:
            assert reply.status_code == 503
            assert "CUDA is not available" in reply.json()["reason"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
