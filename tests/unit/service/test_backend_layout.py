"""The torch backend's GPU layout (channels-last weights and activations) computes the same
heatmaps as the default layout; on a CPU it is off unless asked for, and the CPU stays in fp32."""

from __future__ import annotations

import torch

from tdmi.model.presets import build_model, get_preset
from tdmi.service.inference.backends import TorchBackend
from tests.helpers.weights import randomize

CPU = torch.device("cpu")
PRESET = get_preset("tdmi-tiny")


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
