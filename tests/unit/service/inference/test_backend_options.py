"""The backend options that are settings (torch.compile, CUDA graphs) refuse where they do not apply;
on a GPU, CUDA graphs replay what the eager forward computes, for each call's own input; ONNX
Runtime's CPU arena and thread spinning are what ``OrtOptions`` says, and either way answer the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmi.model.presets import build_model, get_preset
from tdmi.service.inference.backends import OnnxRuntimeBackend, OrtOptions, make_backend
from tests.helpers.weights import randomize

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
PRESET = get_preset("tdmi-tiny")


def test_compile_and_cuda_graphs_need_backend_torch(tmp_path: Path) -> None:
    network = build_model(PRESET.name)
    for option in ({"compile": True}, {"cuda_graphs": True}):
        with pytest.raises(ValueError, match="need backend torch"):
            make_backend("onnxruntime", network, PRESET, CPU, "fp32", tmp_path, "t", **option)


def test_the_onnx_runtime_arena_is_on_unless_turned_off_and_answers_the_same(tmp_path: Path) -> None:
    """On by default (Settings.ort_memory_arena: faster, but its buffers are never given back);
    the heatmaps agree within float rounding (1e-5 of the largest value) with it on or off."""
    network = randomize(build_model(PRESET.name))
    no_arena = OrtOptions(memory_arena=False, spinning=True)
    plain = make_backend("onnxruntime", network, PRESET, CPU, "fp32", tmp_path, "t", ort=no_arena)
    arena = make_backend("onnxruntime", network, PRESET, CPU, "fp32", tmp_path, "t")
    for backend, expected in ((plain, False), (arena, True)):
        assert isinstance(backend, OnnxRuntimeBackend)
        options = backend.session.get_session_options()
        assert options.enable_cpu_mem_arena is expected
        # threads spin only when asked (Settings.ort_spinning), with the arena's opposite here
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        assert spinning == ("0" if expected else "1")
        assert not backend.fixed_shapes  # a CPU session runs any batch size as it comes
    inputs = torch.randn(PRESET.input_shape(2))
    without, with_arena = plain(inputs), arena(inputs)
    torch.testing.assert_close(without, with_arena, rtol=0, atol=1e-5 * float(without.abs().max()))


def test_cuda_graphs_need_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CUDA device"):
        make_backend("torch", build_model(PRESET.name), PRESET, CPU, "fp32", tmp_path, "t", cuda_graphs=True)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graphs_replay_what_eager_computes(precision: str, tmp_path: Path) -> None:
    """The first call of a shape captures its graph, later calls copy their input in and replay.
    Each answer must be eager's for its own input, and stay so through later replays. The bound,
    1 % of the largest heatmap value, is far below the 70 % two random inputs differ by (on the CPU)."""
    network = randomize(build_model(PRESET.name))
    eager = make_backend("torch", network, PRESET, CUDA, precision, tmp_path, "t")
    graphs = make_backend("torch", network, PRESET, CUDA, precision, tmp_path, "t", cuda_graphs=True)
    calls = [torch.randn(PRESET.input_shape(size), device=CUDA) for size in (2, 2, 1, 2)]
    answers = [graphs(inputs) for inputs in calls]  # a graph for 2 clips, one for 1, then replays
    for inputs, answer in zip(calls, answers):
        expected = eager(inputs)
        assert answer.dtype == torch.float32 and answer.shape == expected.shape
        torch.testing.assert_close(answer, expected, rtol=0, atol=0.01 * float(expected.abs().max()))
