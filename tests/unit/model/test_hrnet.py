"""HRNet: official names and shapes, parameter counts, official outputs, checkpoint forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tdmi import model
from tdmi.model.checkpoint import CheckpointError, read_checkpoint
from tdmi.model.hrnet import HRNetConfig, PoseHighResolutionNet
from tdmi.model.presets import load_checkpoint
from tests.helpers.weights import deterministic_input, deterministic_state_dict

DATA = Path(__file__).parents[2] / "data" / "hrnet"
OFFICIAL_PARAMS = {32: 28_536_113, 48: 63_595_745}
PRESET = {32: "hrnet-w32-256x192", 48: "hrnet-w48-384x288"}


def official_shapes(name: str) -> dict[str, tuple[int, ...]]:
    entries = json.loads((DATA / name).read_text())["state_dict"]
    return {key: tuple(shape) for key, shape in entries}


@pytest.mark.parametrize("width", [32, 48])
def test_state_dict_names_and_shapes_match_official(width: int) -> None:
    with torch.device("meta"):
        net = PoseHighResolutionNet(HRNetConfig(width=width))
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert list(ours.items()) == list(official_shapes(f"pose_hrnet_w{width}_keys.json").items())
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMS[width]


@pytest.mark.parametrize("width", [32, pytest.param(48, marks=pytest.mark.slow)])  # W48: 12 s
def test_reproduces_official_outputs(width: int) -> None:
    reference = np.load(DATA / f"pose_hrnet_w{width}_output.npz")
    net = PoseHighResolutionNet(HRNetConfig(width=width)).eval()
    net.load_state_dict(deterministic_state_dict(official_shapes(f"pose_hrnet_w{width}_keys.json")))
    with torch.no_grad():
        out = net(deterministic_input(tuple(reference["input_shape"]), seed=0)).numpy()
    expected = reference["heatmaps"]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_stage_features_at_quarter_resolution() -> None:
    with torch.device("meta"):
        net = PoseHighResolutionNet(HRNetConfig(width=48))
        features = net.forward_features(torch.empty(2, 3, 384, 288))
    assert [tuple(f.shape) for f in features] == [(2, 256, 96, 72)] + [(2, 48, 96, 72)] * 3
    assert [i.channels for i in net.feature_info] == [256, 48, 48, 48]


@pytest.fixture(scope="module")
def official_w32_state() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(official_shapes("pose_hrnet_w32_keys.json"))


def _heatmaps(net: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(deterministic_input((1, 3, 64, 64), seed=1))


@pytest.mark.parametrize("form", ["plain", "wrapped", "module-prefix", "no-num-batches-tracked"])
def test_official_checkpoint_forms_load(
    form: str, official_w32_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(official_w32_state)
    if form == "module-prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    if form == "no-num-batches-tracked":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    payload = {"state_dict": state, "epoch": 3} if form == "wrapped" else state
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(payload, path)

    net = model.build_model("hrnet-w32-256x192", path)
    reference = PoseHighResolutionNet(HRNetConfig(width=32)).eval()
    reference.load_state_dict(official_w32_state)
    assert torch.equal(_heatmaps(net), _heatmaps(reference))


def test_imagenet_checkpoint_reports_and_ignores_classifier(tmp_path: Path) -> None:
    state = deterministic_state_dict(official_shapes("imagenet_hrnet_w32_keys.json"))
    path = tmp_path / "hrnet_w32-36af842e.pth"
    torch.save(state, path)
    preset = model.get_preset("hrnet-w32-256x192")
    net = preset.build()
    report = load_checkpoint(net, preset, path)
    assert "classifier.weight" in report.ignored
    assert any(k.startswith("incre_modules.") for k in report.ignored)
    assert any(k.startswith("stage4.2.fuse_layers.3.") for k in report.ignored)
    assert report.initialised == ["final_layer.weight", "final_layer.bias"]
    assert torch.equal(
        net.state_dict()["stage4.2.branches.0.0.conv1.weight"], state["stage4.2.branches.0.0.conv1.weight"]
    )


def test_hrnet_file_initialises_tdmi_backbone(
    official_w32_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(official_w32_state, path)
    preset = model.get_preset("tdmi-w32-256x192")
    net = preset.build()
    report = load_checkpoint(net, preset, path)
    assert report.ignored == []  # its 1x1 final_layer became the centre of TDMI's 3x3 head
    head = net.state_dict()["head.weight"]
    assert torch.equal(head[:, :, 1, 1], official_w32_state["final_layer.weight"][:, :, 0, 0])
    assert not head[:, :, 0].any() and not head[:, :, 2].any()
    assert report.initialised and all(not k.startswith(("backbone.", "head.")) for k in report.initialised)
    assert torch.equal(
        net.state_dict()["backbone.layer1.0.conv1.weight"], official_w32_state["layer1.0.conv1.weight"]
    )


def test_mismatched_checkpoint_names_the_keys(
    official_w32_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(official_w32_state)
    del state["stage3.1.branches.2.0.conv2.weight"]
    state["head.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        model.build_model("hrnet-w32-256x192", path)
    message = str(err.value)
    assert "\n" not in message
    assert "1 missing keys (stage3.1.branches.2.0.conv2.weight)" in message
    assert "1 unexpected keys (head.extra)" in message


def test_wrong_width_is_a_shape_error(tmp_path: Path) -> None:
    path = tmp_path / "w32.pth"
    torch.save(deterministic_state_dict(official_shapes("pose_hrnet_w32_keys.json")), path)
    with pytest.raises(CheckpointError, match="wrong shape"):
        model.build_model("hrnet-w48-384x288", path)


def test_corrupt_and_unsafe_files_fail_clearly(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(text)
    good = tmp_path / "good.pth"
    torch.save({"a": torch.ones(2)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(truncated)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"a": torch.ones(2)}, "config": Path("x")}, unsafe)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        read_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "missing.pth")
