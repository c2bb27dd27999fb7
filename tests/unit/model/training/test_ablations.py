"""Every named ablation under configs/ablations/ builds, starts as its single-frame HRNet, and
trains one step through the real trainer on real synthetic clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmi.model.checkpoint import save_checkpoint
from tdmi.model.data.synth import SynthOptions, write_video
from tdmi.model.layers.deform import ModulatedDeformConv2d
from tdmi.model.presets import build_model
from tdmi.model.tdmi import TDMI
from tdmi.model.training.config import ConfigError, load_config, validate_config
from tdmi.model.training.metrics_log import read_metrics
from tdmi.model.training.trainer import build_network, train
from tests.helpers.weights import randomize

ABLATIONS = sorted((Path(__file__).resolve().parents[4] / "configs" / "ablations").glob("*.yaml"))
MI_TERMS = {"mi_useful_noisy", "mi_motion_useful", "mi_useful_label", "mi_feature_label"}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_video(SynthOptions(out=root, videos=1, frames=6, width=192, height=144, seed=11, min_persons=2), 0)
    return root


@pytest.fixture(scope="module")
def single_frame(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    net = randomize(build_model("hrnet-tiny")).eval()
    path = tmp_path_factory.mktemp("init") / "hrnet_tiny.pt"
    save_checkpoint(net, path, "hrnet-tiny")
    return net, path


def test_the_ablations_cover_every_switch() -> None:
    names = {p.stem for p in ABLATIONS}
    assert {"full", "no_mi", "no_rdm", "no_dcn", "light_offsets", "stages_4", "concat_fusion"} <= names
    assert {"mi_no_useful_noisy", "mi_no_motion_useful", "mi_no_conditional", "mi_literal"} <= names


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_ablation_starts_as_the_single_frame_model(path: Path, single_frame: tuple) -> None:
    single, init = single_frame
    cfg = load_config(path, [f"model.init={init}"])
    net, preset = build_network(cfg)
    assert isinstance(net, TDMI) and isinstance(preset.config, type(net.cfg))
    options = cfg.model.tdmi
    assert options is not None
    has_dcn = any(isinstance(m, ModulatedDeformConv2d) for m in net.modules())
    assert has_dcn == (options.deform is not False)
    assert (net.rdm is not None) == (options.rdm is not False)
    assert len(net.tde.stages) == len(options.tde_stages or (1, 2, 3, 4))
    clips = torch.randn(2, 5, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(clips), single(clips[:, 2]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_ablation_trains_one_step(path: Path, synth_root: Path, tmp_path: Path) -> None:
    cfg = load_config(
        path,
        [
            f"data.root={synth_root}",
            f"train.out_dir={tmp_path / 'run'}",
            "train.max_steps=1",
            "train.batch_size=1",
            "train.val_every=0",
            "train.device=cpu",
            "train.progress=false",
            "data.num_workers=0",
        ],
    )
    result = train(cfg)
    assert result.step == 1
    (row,) = read_metrics(tmp_path / "run" / "metrics.csv")
    mi = cfg.loss.mutual_info
    weights = {
        "mi_useful_noisy": mi.useful_noisy,
        "mi_motion_useful": mi.motion_useful,
        "mi_useful_label": mi.useful_label,
        "mi_feature_label": mi.feature_label,
    }
    expected = {k for k, w in weights.items() if w > 0} if cfg.loss.alpha > 0 else set()
    assert {k for k in MI_TERMS if row.get(k) not in (None, "")} == expected
    assert all(torch.isfinite(torch.tensor(float(row[k]))) for k in ("loss", "heatmap", *expected))


def test_mi_terms_on_mu_and_mn_without_rdm_are_refused() -> None:
    raw = {
        "model": {"name": "tdmi-tiny", "tdmi": {"rdm": False}},
        "loss": {"alpha": 1.0},
        "data": {"root": "data"},
        "train": {"out_dir": "runs/x"},
    }
    with pytest.raises(ConfigError, match="rdm is false"):
        validate_config(raw)


def test_a_stage_outside_one_to_four_is_refused() -> None:
    raw = {
        "model": {"name": "tdmi-tiny", "tdmi": {"tde_stages": [0, 4]}},
        "data": {"root": "data"},
        "train": {"out_dir": "runs/x"},
    }
    with pytest.raises(ConfigError, match="tde_stages"):
        validate_config(raw)
