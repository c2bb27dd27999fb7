"""MMPose's HRNet checkpoints (0.x and 1.x forms) load as the same weights in the official form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tdmi import model
from tdmi.model.checkpoint import read_checkpoint
from tdmi.model.presets import get_preset, load_checkpoint, with_checkpoint_joints
from tests.helpers.mmpose import write_mmpose_checkpoint
from tests.helpers.weights import deterministic_input, deterministic_state_dict, randomize
from tests.unit.model.test_hrnet import DATA, PRESET, official_shapes


@pytest.fixture(scope="module")
def w32() -> dict[str, torch.Tensor]:
    """Official HRNet-W32 names and shapes, deterministic values (those of the reference output)."""
    return deterministic_state_dict(official_shapes("pose_hrnet_w32_keys.json"))


@pytest.mark.parametrize("version", ["0.x", "1.x"])
def test_mmpose_files_reproduce_the_official_outputs(
    version: str, w32: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    # the fixture is the official implementation's output for these very weights
    reference = np.load(DATA / "pose_hrnet_w32_output.npz")
    path = write_mmpose_checkpoint(w32, tmp_path / "mmpose.pth", version)  # type: ignore[arg-type]
    net = model.build_model(PRESET[32], path)
    with torch.no_grad():
        out = net(deterministic_input(tuple(reference["input_shape"]), seed=0)).numpy()
    expected = reference["heatmaps"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.fixture
def tiny() -> dict[str, torch.Tensor]:
    """hrnet-tiny's state dict: official key names, small tensors."""
    return randomize(model.build_model("hrnet-tiny")).state_dict()


def test_the_keys_are_renamed_to_the_official_ones_and_nothing_else(
    tiny: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    official = tiny
    ckpt = read_checkpoint(write_mmpose_checkpoint(official, tmp_path / "a.pth", "0.x"))
    assert list(ckpt.state_dict) == list(official)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in official.items())


def test_1x_metadata_names_the_joint_layout(tiny: dict[str, torch.Tensor], tmp_path: Path) -> None:
    official = tiny
    coco = read_checkpoint(write_mmpose_checkpoint(official, tmp_path / "coco.pth", "1.x", "coco"))
    posetrack = read_checkpoint(write_mmpose_checkpoint(official, tmp_path / "pt.pth", "1.x", "posetrack18"))
    legacy = read_checkpoint(write_mmpose_checkpoint(official, tmp_path / "old.pth", "0.x"))
    assert (coco.joints, posetrack.joints, legacy.joints) == ("coco-17", "posetrack-17", None)
    preset = get_preset("hrnet-w32-256x192")  # a COCO preset
    assert with_checkpoint_joints(preset, posetrack).layout.joints[1:3] == ("head_bottom", "head_top")
    assert with_checkpoint_joints(preset, legacy) is preset


def test_extra_parts_of_an_mmpose_file_are_named(tiny: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = write_mmpose_checkpoint(tiny, tmp_path / "a.pth", "1.x")
    payload = torch.load(path, weights_only=False)
    payload["state_dict"]["neck.conv.weight"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(model.checkpoint.CheckpointError, match=r"1 unexpected keys \(neck.conv.weight\)"):
        model.build_model("hrnet-tiny", path)


def test_tdmi_w48_from_the_posetrack18_w48_file_is_exactly_that_single_frame_model(tmp_path: Path) -> None:
    """The paper's start: TDMI-W48 initialised from MMPose's PoseTrack18 HRNet-W48 (0.x form, real
    shapes, deterministic weights) gives the official single-frame output on the key frame, because
    its temporal branch starts as a no-op. Inputs are small (96x64) to keep the test short; the
    file is the real size (250 MB), which is most of its time."""
    reference = np.load(DATA / "pose_hrnet_w48_output.npz")
    official = deterministic_state_dict(official_shapes("pose_hrnet_w48_keys.json"))
    path = write_mmpose_checkpoint(official, tmp_path / "hrnet_w48_posetrack18_384x288.pth", "0.x")
    preset = get_preset("tdmi-w48-384x288")
    tdmi = preset.build()
    report = load_checkpoint(tdmi, preset, path)
    assert report.ignored == []
    # the first of the reference's two inputs (2, 3, 96, 64): one clip keeps the forward pass short
    key_frame = deterministic_input(tuple(reference["input_shape"]), seed=0)[:1]
    clips = torch.randn(1, preset.num_frames, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    clips[:, preset.num_frames // 2] = key_frame
    with torch.no_grad():
        out = tdmi.eval()(clips).numpy()
    expected = reference["heatmaps"][:1]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
