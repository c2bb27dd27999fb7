"""The mutual-information objective of TDMI (Eq. 8-12), estimated by Variational Self-Distillation.

Every representation x in {M, Mu, Mn, F, F~} is read by a readout h_x into a predictive
distribution of each joint's location y, a spatial softmax at temperature T over the N = h*w
heatmap pixels:

    q_x(i | b, j) = exp(h_x(x)_bji / T) / sum_k exp(h_x(x)_bjk / T)

h_F~ is the model's heatmap head. With ``readouts="fitted"`` (the default) M, Mu, Mn and F each
have a readout of their own, a 3x3 conv like the head (started as its copy) and fitted to the label
by the heatmap MSE on the detached representation, so q_x approximates p(y | x), as a variational
bound needs: it is not shaped by the MI terms, and the representation is not shaped by its fit.
The MI terms read every readout, the head included, with its weights stopped: they shape the
representations only. (``readouts="head"`` reads all five through the shared head and lets L_MI
train it, the earlier form: on the synthetic data it drove the head's output flat within tens of
steps, ``docs/model/temporal_gain.md``.)

Two such distributions are compared per sample b and joint j by

    D_bj(p || q) = sum_i p(i | b, j) * (log p(i | b, j) - log q(i | b, j))

which is the expectation over pixels (under p) of the log-ratio: a per-joint quantity that does
not grow with N, as the heatmap MSE's per-pixel mean does not (``heatmap_mse`` is
0.5/(B*J*N) * sum (pred - target)^2). Every term is then averaged over (sample, joint) with the
joints' label weights w_bj (the MSE's weights; joints never labelled, such as PoseTrack's ears,
drop out) and scaled by T^2:

    <f> = T^2 / (B*J) * sum_bj w_bj * f_bj

T^2 is the distillation convention (Hinton et al.): the gradient of D with respect to the head's
output is (q - p)/T, so T^2 keeps the terms' gradient of order T * (q - p) per pixel, comparable
with the MSE's at alpha = 1, and stops it from growing as T is lowered. Both T^2 and the
per-joint mean make alpha = 1 (the paper's value) a balanced weight; ``tests/unit/model/
test_mutual_info_scale.py`` checks the gradient-norm ratio on the demo checkpoint and at
initialisation, and that the loss does not change with the heatmap's resolution.

The default estimator (``estimator="vsd"``), with sg(.) a stopped gradient (the teacher side):

    L_MI = I(Mu; Mn) - I(M; Mu) + I(Mu; y | F~) + I(F; y | F~)
    I(Mu; Mn)      ~ <relu(m - (D(q_Mu || q_Mn) + D(q_Mn || q_Mu)) / 2)>   (Eq. 8; both sides learn)
    -I(M; Mu)      ~ <D(sg(q_M) || q_Mu)>                                 (Eq. 9; raises I(M; Mu))
    I(Mu; y | F~)  ~ <g_Mu * D(sg(q_Mu) || q_F~)>                         (Eq. 10-11, VSD)
    I(F; y | F~)   ~ <g_F * D(sg(q_F) || q_F~)>                           (Eq. 10-12, VSD)

The conditional terms follow VSD: the information about y that Mu (or F) holds and F~ lacks is
bounded by KL(p(y|Mu) || p(y|F~)), so minimising it makes F~ absorb it; nothing pushes any
representation away from the label. The bound only means that where the teacher knows y better
than F~; where F~ already knows more, the same KL would pull F~ onto the weaker prediction (a
motion feature alone locates joints far worse than F~). So the gate g_x (``conditional_gate``,
on by default) keeps a (sample, joint) only where the teacher puts more probability on the
label's pixel y* (the target heatmap's peak) than F~ does: g_x = [q_x(y*) > q_F~(y*)], stopped.

I(Mu; Mn) is lowered by pushing the two gates' predictions apart until their symmetric
divergence reaches the per-joint margin m (nats per joint, before T^2), so the term is bounded
in [0, T^2 * m] and cannot run away.

``estimator="literal"`` keeps the earlier reading of Eq. 10: I(x; y | F~) ~ I(x; y) - I(x; F~),
each conditional term = <relu(m - D(p_y || q_x))> + <D(sg(q_x) || q_F~)> with p_y the
normalised (sharpened by ``label_temperature``) target heatmap. It lowers the information x
holds about the label, i.e. pushes predictions away from the label; kept only to compare.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tdmi.model.tdmi import TDMIRepresentations

__all__ = [
    "MutualInfoConfig",
    "MutualInfoLoss",
    "VariationalReadouts",
    "joint_divergence",
    "label_log_distribution",
    "spatial_log_softmax",
]

_EPS = 1e-8


@dataclass(frozen=True)
class MutualInfoConfig:
    """Temperatures, the per-joint margin, the estimator and one weight per term of L_MI.

    A weight of 0 switches its term off (the rows of the paper's Table 7).
    """

    temperature: float = 0.1
    label_temperature: float = 1.0  # the literal estimator's label distribution only
    margin: float = 1.0  # nats per joint: I(Mu; Mn) stops pushing beyond this divergence
    estimator: Literal["vsd", "literal"] = "vsd"
    readouts: Literal["fitted", "head"] = "fitted"  # q(y|x) per representation, or the shared head
    conditional_gate: bool = True  # VSD's conditional terms only where the teacher knows y better
    useful_noisy: float = 1.0  # I(Mu; Mn), lowered (Eq. 8)
    motion_useful: float = 1.0  # I(M; Mu), raised (Eq. 9)
    useful_label: float = 1.0  # I(Mu; y | F~), lowered (Eq. 10-11)
    feature_label: float = 1.0  # I(F; y | F~), lowered (Eq. 10-12)

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.label_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.estimator not in ("vsd", "literal"):
            raise ValueError(f"estimator must be 'vsd' or 'literal', got {self.estimator!r}")
        if self.readouts not in ("fitted", "head"):
            raise ValueError(f"readouts must be 'fitted' or 'head', got {self.readouts!r}")

    @property
    def uses_noisy(self) -> bool:
        """Whether any active term reads the disentangled parts Mu, Mn (not the case without RDM)."""
        return self.useful_noisy > 0 or self.motion_useful > 0


def spatial_log_softmax(heatmaps: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, J, h, w) heatmaps -> (B, J, h*w) log-probabilities over each joint's pixels."""
    return F.log_softmax(heatmaps.flatten(2) / temperature, dim=2)


def label_log_distribution(target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Gaussian target heatmaps (B, J, h, w) -> log of their normalised (sharpened) distribution."""
    p = target.flatten(2).clamp_min(0) ** (1.0 / temperature)
    p = p / p.sum(dim=2, keepdim=True).clamp_min(_EPS)
    return torch.log(p.clamp_min(_EPS))


def joint_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """D(p || q) per (sample, joint) from log-probabilities (B, J, N): (B, J). No detaching here."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=2)


REPRESENTATIONS = ("motion", "useful", "noisy", "feature")  # read by fitted readouts; F~ by the head


class VariationalReadouts(nn.Module):
    """q(y | x) for x in M, Mu, Mn, F: one copy of the heatmap head per representation.

    They are fitted to the label on detached representations (``losses.TDMILoss`` adds their
    heatmap MSE), so each approximates p(y | x) without shaping x.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        copies = {name: copy.deepcopy(head).requires_grad_(True) for name in REPRESENTATIONS}
        self.convs = nn.ModuleDict(copies)

    def fit_heatmaps(self, reps: TDMIRepresentations) -> dict[str, torch.Tensor]:
        """Each readout's heatmaps of its detached representation: the input of its fit."""
        return {name: conv(getattr(reps, name).detach()) for name, conv in self.convs.items()}


def _stopped(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with its weights as constants: gradient reaches x only."""
    return functional_call(module, {k: v.detach() for k, v in module.named_parameters()}, (x,))


class MutualInfoLoss(nn.Module):
    """L_MI over TDMI's representations, returned term by term (weights applied, T^2 included).

    ``head`` (the model's heatmap head) is the template of the fitted readouts; it is needed
    unless ``cfg.readouts == "head"``.
    """

    def __init__(self, cfg: MutualInfoConfig = MutualInfoConfig(), head: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        if cfg.readouts == "fitted" and head is None:
            raise ValueError("fitted readouts start as copies of the model's head: pass head")
        self.readouts = VariationalReadouts(head) if cfg.readouts == "fitted" and head is not None else None

    def _mean(self, per_joint: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """<f>: T^2 times the (sample, joint) mean, weighted like the heatmap MSE."""
        return self.cfg.temperature**2 * (per_joint * weight).mean()

    def raise_mi(self, teacher: torch.Tensor, student: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """<D(sg(teacher) || student)>: its minimum gives the student the teacher's information."""
        return self._mean(joint_divergence(teacher.detach(), student), weight)

    def lower_mi(self, a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """<relu(m - symmetric D)>: pushes both sides apart until they differ by the margin."""
        sym = 0.5 * (joint_divergence(a, b) + joint_divergence(b, a))
        return self._mean(F.relu(self.cfg.margin - sym), weight)

    def _conditional(
        self,
        x: torch.Tensor,
        enhanced: torch.Tensor,
        target: torch.Tensor,
        label: torch.Tensor | None,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        """I(x; y | F~): VSD's gated KL(p(y|x) || p(y|F~)), or the literal I(x; y) - I(x; F~)."""
        if label is not None:
            away = self._mean(F.relu(self.cfg.margin - joint_divergence(label, x)), weight)
            return away + self.raise_mi(x, enhanced, weight)
        if self.cfg.conditional_gate:
            peak = target.flatten(2).argmax(dim=2, keepdim=True)
            knows_more = x.gather(2, peak) > enhanced.gather(2, peak)
            weight = weight * knows_more.squeeze(2).to(weight.dtype)
        return self.raise_mi(x, enhanced, weight)

    def forward(
        self,
        reps: TDMIRepresentations,
        head: nn.Module,
        target: torch.Tensor,
        target_weight: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        weight = target_weight.reshape(target.shape[0], target.shape[1])
        cache: dict[str, torch.Tensor] = {}

        def read(name: str) -> torch.Tensor:
            x = getattr(reps, name)
            if self.readouts is None:
                return head(x)
            return _stopped(head if name == "enhanced" else self.readouts.convs[name], x)

        def q(name: str) -> torch.Tensor:
            if name not in cache:
                cache[name] = spatial_log_softmax(read(name), cfg.temperature)
            return cache[name]

        label = label_log_distribution(target, cfg.label_temperature) if cfg.estimator == "literal" else None
        terms: dict[str, torch.Tensor] = {}
        if cfg.useful_noisy > 0:
            terms["mi_useful_noisy"] = cfg.useful_noisy * self.lower_mi(q("useful"), q("noisy"), weight)
        if cfg.motion_useful > 0:
            terms["mi_motion_useful"] = cfg.motion_useful * self.raise_mi(q("motion"), q("useful"), weight)
        if cfg.useful_label > 0:
            terms["mi_useful_label"] = cfg.useful_label * self._conditional(
                q("useful"), q("enhanced"), target, label, weight
            )
        if cfg.feature_label > 0:
            terms["mi_feature_label"] = cfg.feature_label * self._conditional(
                q("feature"), q("enhanced"), target, label, weight
            )
        return terms
