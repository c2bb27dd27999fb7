"""The mutual-information estimators: one optimiser step moves each estimate the right way."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tdmi.model.mutual_info import (
    MutualInfoConfig,
    MutualInfoLoss,
    kl_divergence,
    label_log_distribution,
    spatial_log_softmax,
)
from tdmi.model.tdmi import TDMIRepresentations

B, C, J, H, W = 2, 8, 4, 6, 5
CFG = MutualInfoConfig(temperature=0.5, margin=50.0)


def _setup(seed: int) -> tuple[TDMIRepresentations, nn.Conv2d, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    reps = TDMIRepresentations(*(nn.Parameter(torch.randn(B, C, H, W, generator=gen)) for _ in range(5)))
    head = nn.Conv2d(C, J, 3, padding=1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.1)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centres = torch.rand(B, J, 2, generator=gen) * torch.tensor([W - 1, H - 1])
    target = torch.exp(
        -((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / 2
    )
    return reps, head, target, torch.ones(B, J)


def _kl(head: nn.Module, teacher: torch.Tensor, student: torch.Tensor) -> float:
    with torch.no_grad():
        return kl_divergence(
            spatial_log_softmax(head(teacher), CFG.temperature),
            spatial_log_softmax(head(student), CFG.temperature),
        ).item()


def _label_kl(head: nn.Module, target: torch.Tensor, rep: torch.Tensor) -> float:
    with torch.no_grad():
        return kl_divergence(
            label_log_distribution(target), spatial_log_softmax(head(rep), CFG.temperature)
        ).item()


def _step(term: str, seed: int) -> tuple[dict, dict, TDMIRepresentations]:
    reps, head, target, weight = _setup(seed)
    loss_fn = MutualInfoLoss(CFG)

    def measure() -> dict[str, float]:
        return {
            "useful_noisy": _kl(head, reps.useful, reps.noisy),
            "motion_useful": _kl(head, reps.motion, reps.useful),
            "label_useful": _label_kl(head, target, reps.useful),
            "useful_enhanced": _kl(head, reps.useful, reps.enhanced),
            "label_feature": _label_kl(head, target, reps.feature),
            "feature_enhanced": _kl(head, reps.feature, reps.enhanced),
        }

    before = measure()
    optimiser = torch.optim.SGD([*reps, *head.parameters()], lr=0.05)
    loss_fn(reps, head, target, weight)[term].backward()
    optimiser.step()
    return before, measure(), reps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lowering_useful_noisy_information_separates_them(seed: int) -> None:
    before, after, reps = _step("mi_useful_noisy", seed)
    assert before["useful_noisy"] < CFG.margin  # inside the bound, so the term is active
    assert after["useful_noisy"] > before["useful_noisy"]  # divergence up = I(Mu; Mn) down
    assert reps.useful.grad is None  # the teacher side is not pushed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_raising_motion_useful_information_aligns_them(seed: int) -> None:
    before, after, reps = _step("mi_motion_useful", seed)
    assert after["motion_useful"] < before["motion_useful"]  # I(M; Mu) up
    assert reps.motion.grad is None


@pytest.mark.parametrize(
    ("term", "label_key", "agree_key"),
    [
        ("mi_useful_label", "label_useful", "useful_enhanced"),
        ("mi_feature_label", "label_feature", "feature_enhanced"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conditional_terms_lower_label_information_and_raise_agreement(
    term: str, label_key: str, agree_key: str, seed: int
) -> None:
    """I(x; y | F~) ~ I(x; y) - I(x; F~): the first falls, the second rises."""
    before, after, _ = _step(term, seed)
    assert before[label_key] < CFG.margin
    assert after[label_key] > before[label_key]
    assert after[agree_key] < before[agree_key]


def test_lowered_terms_are_bounded_by_the_margin() -> None:
    reps, head, target, weight = _setup(0)
    far = reps._replace(noisy=reps.noisy.detach() * 0 + 100 * torch.randn(B, C, H, W))
    loss = MutualInfoLoss(MutualInfoConfig(margin=1.0))(far, head, target, weight)
    assert 0.0 <= loss["mi_useful_noisy"].item() <= 1.0
    assert all(torch.isfinite(v) for v in loss.values())


def test_kl_uses_batchmean_and_is_zero_for_equal_distributions() -> None:
    log_p = spatial_log_softmax(torch.randn(3, 2, 4, 4), 1.0)
    assert kl_divergence(log_p, log_p).item() == pytest.approx(0.0, abs=1e-6)
    log_q = spatial_log_softmax(torch.randn(3, 2, 4, 4), 1.0)
    p = log_p.exp()
    manual = (p * (log_p - log_q)).sum() / 3
    assert kl_divergence(log_p, log_q).item() == pytest.approx(manual.item(), rel=1e-5)
