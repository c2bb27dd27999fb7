"""L_MI at alpha = 1 is balanced against the heatmap MSE: the ratio of their gradient norms over
the network's parameters lies in [1/50, 50], on the shipped demo checkpoint and at
initialisation, on a batch of real synthetic clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.data.synth import SynthOptions, write_video
from tdmi.model.losses import heatmap_mse
from tdmi.model.mutual_info import MutualInfoConfig, MutualInfoLoss
from tdmi.model.presets import build_model, get_preset
from tdmi.model.tdmi import TDMI

DEMO = Path(__file__).resolve().parents[3] / "tdmi" / "model" / "weights" / "tdmi_tiny_synth.pt"


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    root = tmp_path_factory.mktemp("synth")
    write_video(SynthOptions(out=root, videos=1, frames=8, width=192, height=144, seed=7, min_persons=2), 0)
    data = PoseTrackClips(root, root / "annotations" / "train", input_size=(128, 96), radius=2)
    items = [data[i] for i in range(0, len(data), max(1, len(data) // 4))][:4]
    return tuple(torch.stack([item[k] for item in items]) for k in ("inputs", "target", "target_weight"))


def _grad_norm_ratio(net: TDMI, batch: tuple[torch.Tensor, ...], cfg: MutualInfoConfig) -> float:
    clips, target, weight = batch
    net.train()
    reps = net.forward_features(clips)
    heatmap = heatmap_mse(net.forward_head(reps.enhanced), target, weight)
    mi = sum(MutualInfoLoss(cfg, net.head)(reps, net.head, target, weight).values())
    params = [p for p in net.parameters() if p.requires_grad]

    def norm(loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return torch.sqrt(sum((g**2).sum() for g in grads if g is not None))

    return float(norm(mi) / norm(heatmap))


@pytest.mark.parametrize("start", ["demo", "init"])
def test_mi_and_heatmap_gradients_are_balanced_at_alpha_one(start: str, batch: tuple) -> None:
    torch.manual_seed(0)
    net = build_model("tdmi-tiny", DEMO) if start == "demo" else get_preset("tdmi-tiny").build()
    assert isinstance(net, TDMI)
    ratio = _grad_norm_ratio(net, batch, MutualInfoConfig())
    assert 1 / 50 <= ratio <= 50, ratio
