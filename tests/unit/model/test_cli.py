"""The model commands of ``tdmi``: output on success, one line and a non-zero code on error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tdmi.model.checkpoint import read_checkpoint, save_checkpoint
from tdmi.model.presets import get_preset
from tdmi.service.cli import main
from tests.helpers.weights import deterministic_state_dict, randomize

DATA = Path(__file__).parents[2] / "data" / "hrnet"


def test_info(capsys) -> None:
    assert main(["info", "tdmi-tiny"]) == 0
    out = capsys.readouterr().out
    assert "parameters:  904,789" in out
    assert "(1, 5, 3, 128, 96)" in out and "(1, 17, 32, 24)" in out
    gflops = float(out.split("GFLOPs/clip:")[1].split()[0])
    assert 0.5 < gflops < 5


def test_predict_refuses_a_preset_without_weights(tmp_path: Path, capsys) -> None:
    args = ["predict", "posetrack", "--model", "tdmi-tiny", "--data", str(tmp_path), "--out", str(tmp_path)]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "tdmi-tiny has no weights without --checkpoint" in error
    assert "--random-weights" in error
    assert main([*args, "--random-weights"]) == 2  # with the flag it goes on, to the missing data
    assert "annotation directory not found" in capsys.readouterr().err


@pytest.mark.slow
def test_import_hrnet_writes_a_checkpoint_for_the_right_preset(tmp_path: Path, capsys) -> None:
    entries = json.loads((DATA / "pose_hrnet_w32_keys.json").read_text())["state_dict"]
    official = deterministic_state_dict({k: tuple(s) for k, s in entries})
    src, out = tmp_path / "pose_hrnet_w32_256x192.pth", tmp_path / "w32.pt"
    torch.save({f"module.{k}": v for k, v in official.items()}, src)
    assert main(["import-hrnet", str(src), "--out", str(out)]) == 0
    assert "hrnet-w32-256x192" in capsys.readouterr().out
    ckpt = read_checkpoint(out)
    assert ckpt.preset == "hrnet-w32-256x192"
    assert torch.equal(ckpt.state_dict["final_layer.weight"], official["final_layer.weight"])


@pytest.mark.slow
def test_export_torchscript_checks_parity(tmp_path: Path, capsys) -> None:
    preset = get_preset("tdmi-tiny")
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(randomize(preset.build()), ckpt, preset.name)
    out = tmp_path / "tiny.ts"
    assert (
        main(
            [
                "export",
                "--model",
                "tdmi-tiny",
                "--checkpoint",
                str(ckpt),
                "--format",
                "torchscript",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    line = capsys.readouterr().out
    assert out.is_file() and "relative error vs eager at batch 3" in line
    assert float(line.rsplit(":", 1)[1]) < 1e-4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "hrnet-w99"], "unknown model 'hrnet-w99'"),
        (
            [
                "export",
                "--model",
                "tdmi-tiny",
                "--checkpoint",
                "missing.pth",
                "--format",
                "onnx",
                "--out",
                "x",
            ],
            "no such checkpoint",
        ),
    ],
)
def test_errors_are_one_line(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("tdmi: error:")


def test_checkpoint_of_another_preset_is_refused(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(get_preset("tdmi-tiny").build(), ckpt, "tdmi-tiny")
    argv = [
        "export",
        "--model",
        "tdmi-w32-256x192",
        "--checkpoint",
        str(ckpt),
        "--format",
        "onnx",
        "--out",
        "x",
    ]
    assert main(argv) == 2
    assert "made for preset 'tdmi-tiny', not 'tdmi-w32-256x192'" in capsys.readouterr().err
