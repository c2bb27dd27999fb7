"""The temporal-gain experiment compares like with like: one start checkpoint, one seed, one
schedule and equal steps for every arm, held-out videos of another seed, and the same batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.data.synth import SynthOptions, write_video
from tdmi.model.training.config import validate_config
from tdmi.model.training.distributed import init_distributed
from tdmi.model.training.experiment import (
    ARMS,
    ExperimentPlan,
    arm,
    arm_config,
    comparisons,
    pretrain_config,
    results_table,
)
from tdmi.model.training.trainer import Trainer


def test_arms_share_start_seed_schedule_and_steps(tmp_path: Path) -> None:
    plan = ExperimentPlan(out=tmp_path, epochs=3)
    configs = {name: arm_config(plan, name) for name in ARMS}
    start = {cfg.model.init for cfg in configs.values()}
    assert start == {tmp_path / "pretrain" / "last.pt"}
    for cfg in configs.values():
        train = cfg.train
        assert (train.seed, train.epochs, train.batch_size, train.lr) == (0, 3, 16, 1e-3)
        assert list(train.milestones) == [2]  # the lr drops for the last epoch
        assert train.val_every == 0  # nothing is picked on the held-out videos
        assert cfg.data.train_dir == tmp_path / "data" / "annotations" / "train"
        assert cfg.data.val_dir == tmp_path / "data" / "annotations" / "heldout-seed12"
    assert configs["tdmi_alpha1"].loss.alpha == 1.0
    assert [n for n, c in configs.items() if c.loss.alpha > 0] == ["tdmi_alpha1", "tdmi_alpha1_no_un"]
    assert configs["tdmi_alpha1_no_un"].loss.mutual_info.useful_noisy == 0.0
    assert configs["tdmi_alpha1"].loss.mutual_info.useful_noisy == 1.0
    assert [n for n, c in configs.items() if c.data.static_clips] == ["tdmi_static"]
    assert configs["single"].model.name == "hrnet-tiny"
    assert pretrain_config(plan).model.init is None


def test_swept_arms_change_alpha_and_margin_only(tmp_path: Path) -> None:
    plan = ExperimentPlan(out=tmp_path, arms=("tdmi_alpha0", "tdmi_alpha0.1", "tdmi_alpha0.1_margin0.25"))
    base, swept, margin = (arm_config(plan, name) for name in plan.arms)
    assert (swept.loss.alpha, margin.loss.alpha) == (0.1, 0.1)
    assert (swept.loss.mutual_info.margin, margin.loss.mutual_info.margin) == (1.0, 0.25)
    assert margin.model == swept.model == base.model and margin.train.seed == base.train.seed
    assert comparisons(plan.arms) == [
        ("tdmi_alpha0.1", "tdmi_alpha0"),
        ("tdmi_alpha0.1_margin0.25", "tdmi_alpha0"),
        ("tdmi_alpha0.1_margin0.25", "tdmi_alpha0.1"),
    ]
    with pytest.raises(ValueError, match="unknown arm"):
        arm("tdmi_alpha-1")


def test_a_fresh_held_out_seed_keeps_its_own_videos_and_results(tmp_path: Path) -> None:
    fresh = ExperimentPlan(out=tmp_path, heldout_seed=41)
    assert fresh.heldout == tmp_path / "data" / "annotations" / "heldout-seed41"
    assert fresh.results_stem == "results-seed41"
    assert arm_config(fresh, "tdmi_alpha0").model.init == tmp_path / "pretrain" / "last.pt"


def test_held_out_videos_need_their_own_seed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed of their own"):
        ExperimentPlan(out=tmp_path, train_seed=3, heldout_seed=3)


def test_single_frame_and_temporal_runs_see_the_same_batches(tmp_path: Path) -> None:
    """Same samples in the same order with the same augmentations, though the two models'
    initialisations drew different amounts of randomness."""
    write_video(
        SynthOptions(out=tmp_path, videos=1, frames=6, width=192, height=144, seed=4, min_persons=2), 0
    )
    first = {}
    for name in ("hrnet-tiny", "tdmi-tiny"):
        cfg = validate_config(
            {
                "model": {"name": name},
                "loss": {"alpha": 0.0},
                "data": {"root": str(tmp_path), "num_workers": 1},
                "train": {
                    "out_dir": str(tmp_path / name),
                    "batch_size": 2,
                    "val_every": 0,
                    "progress": False,
                },
            }
        )
        trainer = Trainer(cfg, init_distributed("cpu"))
        trainer.sampler.set_epoch(0)
        first[name] = next(iter(trainer.loader))
    single, temporal = first["hrnet-tiny"], first["tdmi-tiny"]
    assert torch.equal(single["meta"]["index"], temporal["meta"]["index"])
    torch.testing.assert_close(single["target"], temporal["target"], rtol=0, atol=0)
    torch.testing.assert_close(single["inputs"], temporal["inputs"][:, 2], rtol=0, atol=0)  # the key frame


def test_static_clips_repeat_the_key_frame(tmp_path: Path) -> None:
    write_video(
        SynthOptions(out=tmp_path, videos=1, frames=6, width=192, height=144, seed=4, min_persons=1), 0
    )
    moving, static = (
        PoseTrackClips(tmp_path, tmp_path / "annotations" / "train", input_size=(128, 96), radius=2, static=s)
        for s in (False, True)
    )
    index = next(
        k for k, sample in enumerate(moving.samples) if sample.frame == 3
    )  # neighbours on both sides
    clip, still = moving[index]["inputs"], static[index]["inputs"]
    assert not torch.equal(clip[0], clip[2])  # the people move
    for t in range(5):
        assert torch.equal(still[t], clip[2])
    assert torch.equal(moving[index]["target"], static[index]["target"])


def test_the_results_table_has_a_jitter_column_for_every_arm() -> None:
    subsets = {"all": 35.3, "occluded_joints": 4.8, "blurred_frames": 32.1, "clean_frames": 46.9}
    results = {
        "map": {"single": subsets, "tdmi_alpha0": subsets},
        "jitter": {
            "single": {"mean": 0.0886, "triples": 10, "gt_triples": 12},
            "tdmi_alpha0": {"mean": None, "triples": 0, "gt_triples": 12},
        },
        "differences": {},
    }
    table = results_table(results)
    assert "| | all | occluded_joints | blurred_frames | clean_frames | jitter |" in table
    assert "| single | 35.3 | 4.8 | 32.1 | 46.9 | 0.0886 |" in table
    assert "| tdmi_alpha0 | 35.3 | 4.8 | 32.1 | 46.9 | n/a |" in table
    assert "| | all | occluded_joints | blurred_frames | clean_frames |\n" in table  # differences: no jitter
