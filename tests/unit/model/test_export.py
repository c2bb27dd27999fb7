"""Exported tdmi-tiny (ONNX Runtime, TorchScript) matches eager PyTorch at any batch size."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from tdmi.model.export import export_model, relative_error, run_exported
from tdmi.model.presets import get_preset
from tests.helpers.weights import randomize

PRESET = get_preset("tdmi-tiny")


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return randomize(PRESET.build()).eval()


# the ONNX export takes 17 s on 2 cores: the full suite only (the quick selection still exports,
# at the start of its real server, whose default backend on a CPU is ONNX Runtime)
@pytest.fixture(scope="module", params=[pytest.param("onnx", marks=pytest.mark.slow), "torchscript"])
def exported(request, tiny, tmp_path_factory) -> tuple[str, Path]:
    fmt = request.param
    path = tmp_path_factory.mktemp("export") / f"tiny.{fmt}"
    export_model(tiny, torch.randn(PRESET.input_shape(2)), path, fmt)
    return fmt, path


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_exported_matches_eager(exported, tiny, batch: int) -> None:
    fmt, path = exported
    clips = torch.randn(PRESET.input_shape(batch))
    with torch.no_grad():
        reference = tiny(clips).numpy()
    assert reference.std() > 1e-3  # a degenerate (constant) network would prove nothing
    out = run_exported(path, fmt, clips)
    assert out.shape == reference.shape
    assert relative_error(out, reference) < 1e-4


def test_onnx_batch_axis_is_dynamic(exported) -> None:
    fmt, path = exported
    if fmt != "onnx":
        return
    graph = onnx.load(str(path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    assert graph.input[0].name == "input" and graph.output[0].name == "heatmaps"
