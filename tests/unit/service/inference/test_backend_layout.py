"""The torch backend's GPU layout (channels-last weights and activations) computes the same
heatmaps as the default layout; on a CPU it is off unless asked for, and the CPU stays in fp32. On a
GPU, fp16 and bf16 heatmaps stay within a stated bound of the CPU's fp32 ones: a bound the network
meets in those dtypes on the CPU too, so that the GPU test checks the backend, not the network."""

from __future__ import annotations

import pytest
import torch

from tdmi.model.presets import build_model, get_preset
from tdmi.service.inference.backends import TorchBackend
from tests.helpers.weights import randomize

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
PRESET = get_preset("tdmi-tiny")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# largest heatmap error over the largest fp32 heatmap value; measured on the CPU in each dtype
# (tdmi-tiny, these weights, two random clips): bf16 0.015, fp16 0.002. fp32 on a GPU may run its
# convolutions in TF32 (10 bits of mantissa, as fp16)
BOUNDS = {"fp32": 0.01, "fp16": 0.01, "bf16": 0.05}


def _relative_error(heatmaps: torch.Tensor, reference: torch.Tensor) -> float:
    return float((heatmaps.float().cpu() - reference).abs().max() / reference.abs().max())


def _weight_layouts(backend: TorchBackend) -> set[bool]:
    """For every 4-d convolution weight: is it stored channels-last?"""
    return {
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in backend.module.parameters()
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1
    }


def test_channels_last_changes_no_heatmap() -> None:
    inputs = torch.randn(PRESET.input_shape(2))
    plain = TorchBackend(randomize(build_model(PRESET.name)), CPU)  # randomize: the same weights each time
    reference = plain(inputs)
    assert _weight_layouts(plain) == {False}
    fast = TorchBackend(randomize(build_model(PRESET.name)), CPU, channels_last=True)
    assert _weight_layouts(fast) == {True}
    heatmaps = fast(inputs)
    assert heatmaps.dtype == torch.float32 and heatmaps.shape == reference.shape
    assert reference.abs().max() > 0.1  # not a zero head: the comparison means something
    torch.testing.assert_close(heatmaps, reference, rtol=1e-4, atol=1e-4)


def test_a_cpu_backend_keeps_the_default_layout_and_fp32() -> None:
    backend = TorchBackend(randomize(build_model(PRESET.name)), CPU, precision="bf16")
    assert _weight_layouts(backend) == {False}
    assert backend.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in backend.module.parameters())


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_network_meets_the_gpu_bound_in_half_precision_on_the_cpu(precision: str) -> None:
    inputs = torch.randn(PRESET.input_shape(2))
    with torch.inference_mode():
        reference = randomize(build_model(PRESET.name)).eval()(inputs)
        half = randomize(build_model(PRESET.name)).eval().to(DTYPES[precision])
        heatmaps = half(inputs.to(DTYPES[precision]))
    assert heatmaps.dtype == DTYPES[precision]
    assert 0 < _relative_error(heatmaps, reference) < BOUNDS[precision]  # 0: it did run in that dtype


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_gpu_precisions_stay_within_their_bound_of_the_cpu(precision: str) -> None:
    inputs = torch.randn(PRESET.input_shape(2))
    reference = TorchBackend(randomize(build_model(PRESET.name)), CPU)(inputs)
    backend = TorchBackend(randomize(build_model(PRESET.name)), CUDA, precision=precision)
    assert backend.dtype == DTYPES[precision]
    assert {p.dtype for p in backend.module.parameters()} == {DTYPES[precision]}
    assert _weight_layouts(backend) == {True}  # channels-last by default on a GPU
    heatmaps = backend(inputs.to(CUDA))
    assert heatmaps.dtype == torch.float32 and heatmaps.device.type == "cuda"  # as the runner reads them
    assert _relative_error(heatmaps, reference) < BOUNDS[precision]
