"""The default backend: ``auto`` resolves to ONNX Runtime on a CPU in fp32 and to torch wherever a
setting needs torch; a server started with it exports the model, serves a video job, and reports
the backend it chose. (The rest of the suite pins torch: see ``tests/conftest.py``.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tdmi.service.config import Settings
from tests.helpers.server import ServerFactory
from tests.integration.determinism import submit_clip, wait_result


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "onnxruntime"),
        ({"feature_reuse": True}, "torch"),
        ({"torch_compile": True}, "torch"),
        ({"device": "cuda"}, "torch"),
        ({"precision": "bf16"}, "torch"),
        ({"backend": "torchscript"}, "torchscript"),
    ],
)
def test_auto_picks_onnxruntime_on_a_cpu_unless_a_setting_needs_torch(
    fields: dict, expected: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, **{"backend": "auto", **fields})
    assert settings.model_backend == expected


@pytest.mark.slow
def test_a_server_with_the_default_backend_runs_onnxruntime_and_serves_a_job(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.get(env={"TDMI_BACKEND": "auto", "TDMI_DETECTOR": "hog"})
    (worker,) = httpx.get(f"{server.base}/v1/workers", timeout=10).json()["workers"]
    assert worker["backend"] == "onnxruntime"
    assert list((server.data_dir / "onnx").glob("tdmi-tiny-*.onnx"))  # exported once, cached
    result = wait_result(server.base, submit_clip(server.base))
    persons = [p for frame in result["frames"] for p in frame["persons"]]
    assert persons, "the pedestrians clip has people on every frame"
    assert np.isfinite(np.array([p["keypoints"] for p in persons], dtype=float)).all()
