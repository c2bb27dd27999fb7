"""Training runs on synthetic data: a loss that falls, resume, a time budget, two-process DDP, the
train command, single-frame presets, a frozen HRNet backbone, and (on a GPU) mixed precision.

Whole runs take 10 s or more each on a 2-core machine: every test here is ``slow`` by its folder
(tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.presets import build_model, get_preset
from tdmi.model.training.config import validate_config
from tdmi.model.training.distributed import init_distributed
from tdmi.model.training.metrics_log import read_metrics
from tdmi.model.training.trainer import Trainer, train
from tdmi.service.cli import main

REPO = Path(__file__).parents[2]
TINY = get_preset("tdmi-tiny")


def _config(root: Path, out_dir: Path, **train: Any) -> dict[str, Any]:
    return {
        "model": {"name": "tdmi-tiny"},
        "data": {"root": str(root), "augment": None, "num_workers": 0},
        "train": {"out_dir": str(out_dir), "batch_size": 4, "val_every": 0, "progress": False, **train},
    }


def _write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_loss_goes_down_on_a_fixed_subset(synth_posetrack: Path, tmp_path: Path) -> None:
    # measured (seed 0, batch 2, no augmentation): the last 5 steps' mean is 0.40x the first 5's
    # for the total loss and 0.46x for the heatmap term (0.3-0.45x over other seeds and batches)
    raw = _config(
        synth_posetrack, tmp_path, epochs=100, batch_size=2, max_steps=30, log_every=1, milestones=[]
    )
    result = train(validate_config(raw))
    rows = [r for r in read_metrics(tmp_path / "metrics.csv") if r["phase"] == "train"]
    assert result.step == 30 and len(rows) == 30
    assert {"heatmap", "mi_useful_noisy", "mi_motion_useful", "mi_useful_label", "mi_feature_label"} <= set(
        rows[0]
    )
    for term, ratio in (("loss", 0.6), ("heatmap", 0.7)):
        values = [float(r[term]) for r in rows]
        first, last = np.mean(values[:5]), np.mean(values[-5:])
        assert last < ratio * first, (term, first, last)


def test_resume_continues_from_the_saved_step_with_the_same_lr(synth_posetrack: Path, tmp_path: Path) -> None:
    steps_per_epoch = (
        len(PoseTrackClips(synth_posetrack, synth_posetrack / "annotations" / "train", TINY.input_size, 2))
        // 4
    )
    stop = steps_per_epoch + 1  # one step into the second epoch, after the lr decay at epoch 1
    raw = _config(synth_posetrack, tmp_path, epochs=3, milestones=[1], log_every=1)
    first = train(validate_config({**raw, "train": {**raw["train"], "max_steps": stop}}))
    assert (first.epoch, first.step) == (1, stop)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["epoch_batches"], saved["step"]) == (1, 1, stop)
    # L_MI's fitted readouts (alpha 1) travel in the training checkpoint, apart from the weights
    assert {k.split(".")[1] for k in saved["readouts"]} == {"motion", "useful", "noisy", "feature"}
    assert not any("convs" in k for k in saved["state_dict"])

    second = train(
        validate_config({**raw, "train": {**raw["train"], "max_steps": stop + 2}}),
        resume=tmp_path / "last.pt",
    )
    assert second.step == stop + 2
    rows = [r for r in read_metrics(tmp_path / "metrics.csv") if r["phase"] == "train"]
    assert [int(r["step"]) for r in rows] == list(range(1, stop + 3))
    lrs = {int(r["step"]): float(r["lr"]) for r in rows}
    assert lrs[1] == pytest.approx(1e-3) and lrs[stop] == lrs[stop + 1] == lrs[stop + 2] == pytest.approx(
        1e-4
    )
    assert {int(r["epoch"]) for r in rows if int(r["step"]) > stop} == {2}
    # Adam's moments came back too: its step count runs on from the first run's
    adam = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]["state"][0]
    assert int(adam["step"]) == stop + 2


def test_time_budget_stops_and_saves(synth_posetrack: Path, tmp_path: Path) -> None:
    result = train(validate_config(_config(synth_posetrack, tmp_path, epochs=50, max_minutes=1e-4)))
    assert result.step == 1  # the budget is checked after every step
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 1


_DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from tdmi.model.training.config import load_config
from tdmi.model.training.trainer import train
result = train(load_config(sys.argv[1]))
params = {k: v.detach() for k, v in result.net.named_parameters()}
torch.save(params, os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
"""


def test_two_process_ddp_ends_with_identical_weights(synth_posetrack: Path, tmp_path: Path) -> None:
    # stopped by max_steps, the run validates: each process predicts half the crops
    raw = _config(synth_posetrack, tmp_path / "run", batch_size=2, max_steps=2, val_every=1)
    cfg = _write_yaml(tmp_path / "cfg.yaml", raw)
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*cmd, str(script), str(cfg), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    initial = dict(TINY.build().named_parameters())
    assert rank0.keys() == rank1.keys() == initial.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert not torch.equal(rank0["head.weight"], initial["head.weight"])
    assert int(torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"]) == 2
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert torch.equal(best["state_dict"]["head.weight"], rank0["head.weight"])


def test_train_command_validates_and_keeps_the_best_checkpoint(synth_posetrack: Path, tmp_path: Path) -> None:
    cfg = _write_yaml(tmp_path / "cfg.yaml", _config(synth_posetrack, tmp_path / "run"))
    # stopped by its step budget, the run still validates and saves
    assert (
        main(["train", "--config", str(cfg), "--set", "train.max_steps=2", "--set", "train.val_every=1"]) == 0
    )
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    val = [r for r in rows if r["phase"] == "val"]
    assert len(val) == 1 and 0.0 <= float(val[0]["val_map"]) <= 100.0
    best = build_model("tdmi-tiny", tmp_path / "run" / "best.pt")
    assert isinstance(best, nn.Module) and not best.training
    assert sorted(p.name for p in (tmp_path / "run" / "val_predictions").iterdir()) == sorted(
        p.name for p in (synth_posetrack / "annotations" / "val").iterdir()
    )


def test_single_frame_preset_trains_and_validates(synth_posetrack: Path, tmp_path: Path) -> None:
    raw = _config(synth_posetrack, tmp_path, max_steps=2, val_every=1)
    raw["model"]["name"] = "hrnet-tiny"
    result = train(validate_config(raw))
    assert result.step == 2 and result.best_map is not None
    rows = read_metrics(tmp_path / "metrics.csv")
    assert "mi_useful_noisy" not in rows[0] and float(rows[0]["heatmap"]) == float(rows[0]["loss"])
    assert not build_model("hrnet-tiny", tmp_path / "best.pt").training


def test_backbone_starts_from_an_hrnet_file_and_stays_frozen(synth_posetrack: Path, tmp_path: Path) -> None:
    hrnet = get_preset("hrnet-tiny").build()
    torch.save(hrnet.state_dict(), tmp_path / "hrnet.pth")  # a plain state dict, as official files are
    raw = _config(synth_posetrack, tmp_path / "run", max_steps=2)
    raw["model"].update(init=str(tmp_path / "hrnet.pth"), freeze_backbone=True)
    trainer = Trainer(validate_config(raw), init_distributed("cpu"))
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    after = trainer.fit().net.state_dict()
    for name, value in hrnet.state_dict().items():
        if not name.startswith("final_layer."):
            assert torch.equal(before[f"backbone.{name}"], value) and torch.equal(
                after[f"backbone.{name}"], value
            )
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(before["tde.stages.0.proj.0.weight"], after["tde.stages.0.proj.0.weight"])
    raw["model"]["name"] = "hrnet-tiny"
    with pytest.raises(ValueError, match="freeze_backbone needs a TDMI preset"):
        train(validate_config(raw))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_starts_where_fp32_does_and_trains_on(
    precision: str, synth_posetrack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first step sees the same weights and batch in both runs, so its heatmap loss differs by
    the autocast rounding alone: within 5 % of fp32's on the same GPU (bf16 keeps 8 bits of mantissa)."""
    losses: dict[str, list[float]] = {}
    for name in ("fp32", precision):
        raw = _config(
            synth_posetrack, tmp_path / name, max_steps=3, log_every=1, device="cuda", precision=name
        )
        assert train(validate_config(raw)).step == 3
        rows = read_metrics(tmp_path / name / "metrics.csv")
        losses[name] = [float(r["heatmap"]) for r in rows if r["phase"] == "train"]
    assert len(losses[precision]) == 3 and np.isfinite(losses[precision]).all()
    assert losses[precision][0] == pytest.approx(losses["fp32"][0], rel=0.05)
    summary = capsys.readouterr().out
    assert f"on cuda:0, {precision}," in summary and "is for CUDA" not in summary
