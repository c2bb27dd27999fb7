"""The backend options that are settings (torch.compile, CUDA graphs) refuse where they do not apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmi.model.presets import build_model, get_preset
from tdmi.service.inference.backends import make_backend

CPU = torch.device("cpu")
PRESET = get_preset("tdmi-tiny")


def test_compile_and_cuda_graphs_need_backend_torch(tmp_path: Path) -> None:
    network = build_model(PRESET.name)
    for option in ({"compile": True}, {"cuda_graphs": True}):
        with pytest.raises(ValueError, match="need backend torch"):
            make_backend("onnxruntime", network, PRESET, CPU, "fp32", tmp_path, "t", **option)


def test_cuda_graphs_need_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CUDA device"):
        make_backend("torch", build_model(PRESET.name), PRESET, CPU, "fp32", tmp_path, "t", cuda_graphs=True)
