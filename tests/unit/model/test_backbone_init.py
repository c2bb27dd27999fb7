"""A single-frame HRNet checkpoint of ours initialises the backbone of the TDMI preset built on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmi.model.checkpoint import CheckpointError, save_checkpoint
from tdmi.model.hrnet import PoseHighResolutionNet
from tdmi.model.presets import PRESETS, build_model, get_preset, load_checkpoint
from tdmi.model.tdmi import TDMIConfig
from tests.helpers.weights import randomize


def test_hrnet_tiny_checkpoint_initialises_the_tdmi_tiny_backbone(tmp_path: Path) -> None:
    single = randomize(build_model("hrnet-tiny"))
    path = tmp_path / "hrnet_tiny.pt"
    save_checkpoint(single, path, "hrnet-tiny")
    tdmi = get_preset("tdmi-tiny").build()
    report = load_checkpoint(tdmi, get_preset("tdmi-tiny"), path)
    for name, tensor in single.state_dict().items():
        if not name.startswith("final_layer."):
            assert torch.equal(tdmi.backbone.state_dict()[name], tensor), name
    assert report.ignored == []  # the 1x1 head went into the centre of TDMI's 3x3 head
    assert any(k.startswith("tde.") for k in report.initialised)  # the temporal parts start fresh
    # the temporal branch starts as a no-op: the fresh TDMI is the single-frame model on the key frame
    clips = torch.randn(2, 5, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(tdmi.eval()(clips), single.eval()(clips[:, 2]), atol=1e-5, rtol=1e-4)


def test_a_checkpoint_of_another_preset_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    save_checkpoint(build_model("tdmi-tiny"), path, "tdmi-tiny")
    with pytest.raises(CheckpointError, match="made for preset 'tdmi-tiny'"):
        load_checkpoint(get_preset("tdmi-w32-256x192").build(), get_preset("tdmi-w32-256x192"), path)


@pytest.mark.parametrize(
    "name",
    # TDMI-ST's F is a fusion of the whole clip, not the key frame's feature: it has no such start
    [
        # W48 takes about 12 s on 2 cores: the full suite only
        pytest.param(n, marks=pytest.mark.slow) if "w48" in n else n
        for n, p in PRESETS.items()
        if isinstance(p.config, TDMIConfig) and not p.config.spatiotemporal
    ],
)
def test_every_tdmi_preset_starts_as_its_single_frame_hrnet(name: str, tmp_path: Path) -> None:
    """An official-format HRNet file of the preset's backbone (e.g. HRNet-W48 for tdmi-w48) makes
    the fresh TDMI compute that HRNet on the key frame: the DCN offsets and the fusion branch
    start at zero, whatever form Eq. 3 takes (small inputs keep W48 fast). In float64, so the only
    difference left is rounding (the TDMI head is a 3x3 conv holding the 1x1 head at its centre)."""
    preset = get_preset(name)
    assert isinstance(preset.config, TDMIConfig)
    single = randomize(PoseHighResolutionNet(preset.config.backbone)).eval()
    path = tmp_path / "official.pth"
    torch.save(single.state_dict(), path)  # bare state dict, as the official files are
    tdmi = preset.build()
    load_checkpoint(tdmi, preset, path)
    clips = torch.randn(1, preset.num_frames, 3, 64, 48, dtype=torch.float64)
    with torch.no_grad():
        got = tdmi.double().eval()(clips)
        want = single.double()(clips[:, preset.config.radius])
    torch.testing.assert_close(got, want, atol=1e-9 * float(want.abs().max()), rtol=1e-9)
