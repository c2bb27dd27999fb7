"""``tdmi serve`` as users start it: the default model on a real server, and a missing accelerator
reported on ``/readyz`` by the real node (in this process: it fails before loading anything)."""

from __future__ import annotations

from pathlib import Path

import httpx
import torch

from tdmi.service.config import Settings
from tdmi.service.main import create_app
from tests.helpers.in_process import TestClient
from tests.helpers.server import ServerProcess


def test_serve_loads_the_default_model(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base}/readyz").status_code == 200
    (model,) = httpx.get(f"{server.base}/v1/models").json()["models"]
    assert model["name"] == "tdmi-tiny" and model["num_frames"] == 5
    assert model["checkpoint"] == "tdmi_tiny_synth.pt"  # the demo checkpoint, shipped in the package
    assert model["skeleton"]["joints"][2] == "head_top"


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
