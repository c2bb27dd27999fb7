"""The mutual-information estimators: one optimiser step moves each estimate the right way, the
teacher sides and every readout stay stopped, the conditional terms act only where the teacher
knows the label better, and the loss is a per-joint quantity independent of resolution."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from tdmi.model.mutual_info import (
    MutualInfoConfig,
    MutualInfoLoss,
    joint_divergence,
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


def _div(head: nn.Module, p: torch.Tensor, q: torch.Tensor, cfg: MutualInfoConfig = CFG) -> float:
    with torch.no_grad():
        log_p = spatial_log_softmax(head(p), cfg.temperature)
        return joint_divergence(log_p, spatial_log_softmax(head(q), cfg.temperature)).mean().item()


def _label_div(head: nn.Module, target: torch.Tensor, rep: torch.Tensor, cfg: MutualInfoConfig) -> float:
    with torch.no_grad():
        return (
            joint_divergence(label_log_distribution(target), spatial_log_softmax(head(rep), cfg.temperature))
            .mean()
            .item()
        )


def _measure(head: nn.Module, reps: TDMIRepresentations, target: torch.Tensor, cfg: MutualInfoConfig) -> dict:
    return {
        "useful_noisy": _div(head, reps.useful, reps.noisy, cfg),
        "motion_useful": _div(head, reps.motion, reps.useful, cfg),
        "useful_enhanced": _div(head, reps.useful, reps.enhanced, cfg),
        "feature_enhanced": _div(head, reps.feature, reps.enhanced, cfg),
        "label_useful": _label_div(head, target, reps.useful, cfg),
        "label_feature": _label_div(head, target, reps.feature, cfg),
    }


def _step(term: str, seed: int, cfg: MutualInfoConfig = CFG) -> tuple[dict, dict, TDMIRepresentations]:
    reps, head, target, weight = _setup(seed)
    before = _measure(head, reps, target, cfg)
    optimiser = torch.optim.SGD([*reps, *head.parameters()], lr=0.5)
    MutualInfoLoss(cfg, head)(reps, head, target, weight)[term].backward()
    assert head.weight.grad is None  # L_MI shapes representations, never the readouts
    optimiser.step()
    return before, _measure(head, reps, target, cfg), reps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lowering_useful_noisy_information_separates_them_through_both_gates(seed: int) -> None:
    before, after, reps = _step("mi_useful_noisy", seed)
    assert before["useful_noisy"] < CFG.margin  # inside the bound, so the term is active
    assert after["useful_noisy"] > before["useful_noisy"]  # divergence up = I(Mu; Mn) down
    for side in (reps.useful, reps.noisy):  # both sides learn (no stopped teacher)
        assert side.grad is not None and side.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_raising_motion_useful_information_aligns_them(seed: int) -> None:
    before, after, reps = _step("mi_motion_useful", seed)
    assert after["motion_useful"] < before["motion_useful"]  # I(M; Mu) up (Eq. 9)
    assert reps.motion.grad is None  # teacher stopped


@pytest.mark.parametrize(
    ("term", "teacher", "agree_key"),
    [("mi_useful_label", "useful", "useful_enhanced"), ("mi_feature_label", "feature", "feature_enhanced")],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vsd_conditional_terms_pull_the_enhanced_feature_onto_the_teacher(
    term: str, teacher: str, agree_key: str, seed: int
) -> None:
    """KL(p(y|x) || p(y|F~)) falls; x (the teacher) is stopped; nothing pushes from the label."""
    before, after, reps = _step(term, seed, replace(CFG, conditional_gate=False))
    assert after[agree_key] < before[agree_key]
    assert getattr(reps, teacher).grad is None
    assert reps.enhanced.grad is not None and reps.enhanced.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_literal_estimator_stays_available_and_pushes_away_from_the_label(seed: int) -> None:
    cfg = MutualInfoConfig(temperature=0.5, margin=50.0, estimator="literal")
    before, after, _ = _step("mi_useful_label", seed, cfg)
    assert before["label_useful"] < cfg.margin
    assert after["label_useful"] > before["label_useful"]  # I(Mu; y) down: the reading VSD replaces
    assert after["useful_enhanced"] < before["useful_enhanced"]


def test_lowered_term_is_bounded_by_the_per_joint_margin() -> None:
    reps, head, target, weight = _setup(0)
    far = reps._replace(noisy=reps.noisy.detach() * 0 + 100 * torch.randn(B, C, H, W))
    cfg = MutualInfoConfig(temperature=0.1, margin=1.0)
    loss = MutualInfoLoss(cfg, head)(far, head, target, weight)
    assert 0.0 <= loss["mi_useful_noisy"].item() <= cfg.temperature**2 * cfg.margin + 1e-9
    assert all(torch.isfinite(v) for v in loss.values())


def test_switched_off_terms_are_not_computed() -> None:
    reps, head, target, weight = _setup(0)
    cfg = MutualInfoConfig(useful_noisy=0.0, feature_label=0.0)
    terms = MutualInfoLoss(cfg, head)(reps, head, target, weight)
    assert set(terms) == {"mi_motion_useful", "mi_useful_label"}


def test_conditional_terms_act_only_where_the_teacher_knows_the_label_better() -> None:
    """Heatmaps as representations (identity readout): joint 0's teacher peaks on the label and
    F~ elsewhere, joint 1 the other way round; only joint 0 pulls F~."""
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")

    def bump(y: int, x: int) -> torch.Tensor:
        return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2.0)

    label, other = bump(1, 1), bump(4, 3)
    useful = torch.stack([label, other])[None]  # (1, 2, H, W)
    enhanced = nn.Parameter(torch.stack([other, label])[None])
    reps = TDMIRepresentations(useful, useful, useful, useful, enhanced)
    cfg = MutualInfoConfig(readouts="head", useful_noisy=0, motion_useful=0, feature_label=0)
    MutualInfoLoss(cfg)(reps, nn.Identity(), torch.stack([label, label])[None], torch.ones(1, 2))[
        "mi_useful_label"
    ].backward()
    assert enhanced.grad is not None
    assert enhanced.grad[0, 0].abs().sum() > 0
    assert enhanced.grad[0, 1].abs().sum() == 0


def test_fitted_readouts_start_as_the_head_and_need_it() -> None:
    _, head, _, _ = _setup(0)
    readouts = MutualInfoLoss(CFG, head).readouts
    assert readouts is not None and set(readouts.convs) == {"motion", "useful", "noisy", "feature"}
    for conv in readouts.convs.values():
        torch.testing.assert_close(conv.weight, head.weight)
        assert conv.weight is not head.weight
    with pytest.raises(ValueError, match="pass head"):
        MutualInfoLoss(CFG)


def test_joint_divergence_is_kl_per_sample_and_joint() -> None:
    log_p = spatial_log_softmax(torch.randn(3, 2, 4, 4), 1.0)
    assert joint_divergence(log_p, log_p).abs().max().item() == pytest.approx(0.0, abs=1e-6)
    log_q = spatial_log_softmax(torch.randn(3, 2, 4, 4), 1.0)
    manual = (log_p.exp() * (log_p - log_q)).sum(dim=2)
    torch.testing.assert_close(joint_divergence(log_p, log_q), manual, rtol=1e-6, atol=1e-7)
    assert joint_divergence(log_p, log_q).shape == (3, 2)


def _blob_maps(h: int, w: int, centres: torch.Tensor, widths: torch.Tensor, amplitude: float) -> torch.Tensor:
    """One smooth bump per (sample, joint), sampled at the pixel centres of an h x w grid over
    the same unit square: the same content at any resolution."""
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    dy = ys[None, None, :, None] - centres[..., 1, None, None]
    dx = xs[None, None, None, :] - centres[..., 0, None, None]
    return amplitude * torch.exp(-(dx**2 + dy**2) / (2 * widths[..., None, None] ** 2))


def test_loss_does_not_change_with_heatmap_resolution() -> None:
    """The same five representations and label at 24x18 and at 48x36 heatmap pixels give every
    L_MI term within 0.5 % (the head is the identity: each representation is its heatmap)."""
    gen = torch.Generator().manual_seed(0)
    centres = [0.3 + 0.4 * torch.rand(B, J, 2, generator=gen, dtype=torch.float64) for _ in range(5)]
    widths = [0.12 + 0.05 * torch.rand(B, J, generator=gen, dtype=torch.float64) for _ in range(5)]
    # Mn a small shift of Mu, so I(Mu; Mn)'s hinge is active
    centres[2] = centres[1] + 0.01
    cfg = MutualInfoConfig(temperature=0.1, margin=1.0, readouts="head", conditional_gate=False)
    values = []
    for h, w in ((24, 18), (48, 36)):
        maps = [_blob_maps(h, w, c, s, 0.5) for c, s in zip(centres, widths)]
        reps = TDMIRepresentations(*maps)
        target = _blob_maps(h, w, centres[4], torch.full((B, J), 0.08, dtype=torch.float64), 1.0)
        terms = MutualInfoLoss(cfg)(reps, nn.Identity(), target, torch.ones(B, J, dtype=torch.float64))
        values.append({k: v.item() for k, v in terms.items()})
    low, high = values
    for name in low:
        assert low[name] > 1e-6, name  # every term is measured, not trivially zero
        assert math.isclose(low[name], high[name], rel_tol=0.005), (name, low[name], high[name])
