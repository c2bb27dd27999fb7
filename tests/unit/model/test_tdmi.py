"""TDMI and TDMI-ST: shapes for every preset, scripting, radius, frozen backbone, gradients."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tdmi import model
from tdmi.model.losses import TDMILoss
from tdmi.model.presets import PRESETS
from tdmi.model.tdmi import TDMI, TDMIConfig
from tests.helpers.weights import randomize

TINY = PRESETS["tdmi-tiny"].config
assert isinstance(TINY, TDMIConfig)


@pytest.mark.parametrize("name", list(PRESETS))
def test_output_shape_of_every_preset(name: str) -> None:
    preset = model.get_preset(name)
    with torch.device("meta"):
        net = preset.build().eval()
        out = net(torch.empty(preset.input_shape(2)))
    h, w = preset.input_size
    assert tuple(out.shape) == (2, preset.layout.num_joints, h // 4, w // 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_scripts(name: str) -> None:
    with torch.device("meta"):
        net = model.get_preset(name).build().eval()
    scripted = torch.jit.script(net)
    assert "forward" in scripted.code


@pytest.mark.parametrize("spatiotemporal", [False, True])
def test_tiny_forward_and_scripted_agree(spatiotemporal: bool) -> None:
    net = randomize(TDMI(replace(TINY, spatiotemporal=spatiotemporal))).eval()
    clips = torch.randn(2, 5, 3, 128, 96)
    with torch.no_grad():
        eager = net(clips)
        scripted = torch.jit.script(net)(clips)
    assert eager.shape == (2, 17, 32, 24)
    assert eager.std() > 0
    torch.testing.assert_close(scripted, eager, rtol=1e-4, atol=1e-4 * eager.abs().max().item())


def test_representations_all_have_backbone_width() -> None:
    net = TDMI(TINY).eval()
    with torch.no_grad():
        reps = net.forward_features(torch.randn(1, 5, 3, 128, 96))
    assert {tuple(r.shape) for r in reps} == {(1, 16, 32, 24)}


@pytest.mark.parametrize("radius", [1, 3])
def test_radius_sets_clip_length(radius: int) -> None:
    net = TDMI(replace(TINY, radius=radius)).eval()
    assert net.num_frames == 2 * radius + 1
    with torch.no_grad():
        out = net(torch.randn(1, 2 * radius + 1, 3, 64, 64))
    assert out.shape == (1, 17, 16, 16)


def test_key_frame_is_the_middle_frame() -> None:
    """Changing only the key frame changes the key-frame feature F; the others do not."""
    net = randomize(TDMI(TINY)).eval()
    clips = torch.randn(1, 5, 3, 128, 96)
    changed = clips.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        base, moved = net.forward_features(clips), net.forward_features(changed)
    torch.testing.assert_close(base.feature, moved.feature)
    assert not torch.allclose(base.motion, moved.motion)


def test_frozen_backbone_keeps_batchnorm_in_eval_and_gets_no_gradient() -> None:
    net = TDMI(replace(TINY, freeze_backbone=True)).train()
    assert not net.backbone.training and net.tde.training
    bn = net.backbone.bn1
    before = bn.running_mean.clone()
    net(torch.randn(2, 5, 3, 64, 64)).sum().backward()
    assert torch.equal(bn.running_mean, before)
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.head.weight.grad is not None


def test_full_objective_reaches_every_parameter() -> None:
    """The noisy gate is trained only by the mutual-information terms; all else by both."""
    net = randomize(TDMI(TINY)).train()
    target = torch.rand(2, 17, 16, 16)
    weight = torch.ones(2, 17)
    TDMILoss(1.0, head=net.head)(net, torch.randn(2, 5, 3, 64, 64), target, weight)["loss"].backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    net.zero_grad(set_to_none=True)
    TDMILoss(alpha=0.0)(net, torch.randn(2, 5, 3, 64, 64), target, weight)["loss"].backward()
    assert net.rdm.noisy_gate[0].weight.grad is None


def test_spatiotemporal_feature_reads_the_whole_clip() -> None:
    """TDMI-ST's F changes when a neighbour frame changes; plain TDMI's does not."""
    net = randomize(TDMI(replace(TINY, spatiotemporal=True))).eval()
    clips = torch.randn(1, 5, 3, 128, 96)
    changed = clips.clone()
    changed[:, 4] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net.forward_features(clips).feature, net.forward_features(changed).feature)
