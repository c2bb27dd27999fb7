"""The mutual-information objective of TDMI, estimated by Variational Self-Distillation.

Every mutual-information term between two representations is read through one shared head
(the model's heatmap head): each representation gives a predictive distribution per joint (a
spatial softmax of the head's heatmap at a temperature), and the agreement of two such
distributions stands for the information the representations share (VSD).

    L_MI = I(Mu; Mn) - I(M; Mu) + I(Mu; y | F~) + I(F; y | F~)
    I(x; y | F~) ~ I(x; y) - I(x; F~)

Two kinds of term, chosen by the sign the MI has in the loss:

- MI to be *raised* (-I(M; Mu), -I(x; F~)): the student's distribution is pulled onto the
  teacher's, ``KL(teacher || student)``, teacher detached. It is >= 0 and falls as the shared
  information grows.
- MI to be *lowered* (I(Mu; Mn), I(x; y)): the student is pushed away from the teacher (or the
  label), but only until their divergence reaches ``margin``: ``relu(margin - KL)``. Bounded in
  [0, margin], so the term cannot run away.

KL is taken on log-probabilities (``log_target=True``), summed over joints and pixels and
averaged over the batch (``batchmean``); joints without a label are left out of label terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tdmi.model.tdmi import TDMIRepresentations

__all__ = [
    "MutualInfoConfig",
    "MutualInfoLoss",
    "kl_divergence",
    "label_log_distribution",
    "spatial_log_softmax",
]

_EPS = 1e-8


@dataclass(frozen=True)
class MutualInfoConfig:
    """Temperatures, the bound of lowered terms, and one weight per term of L_MI."""

    temperature: float = 0.1
    label_temperature: float = 1.0
    margin: float = 1.0
    useful_noisy: float = 1.0  # I(Mu; Mn), lowered
    motion_useful: float = 1.0  # I(M; Mu), raised
    useful_label: float = 1.0  # I(Mu; y | F~), lowered
    feature_label: float = 1.0  # I(F; y | F~), lowered


def spatial_log_softmax(heatmaps: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, J, h, w) heatmaps -> (B, J, h*w) log-probabilities over each joint's pixels."""
    return F.log_softmax(heatmaps.flatten(2) / temperature, dim=2)


def label_log_distribution(target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Gaussian target heatmaps (B, J, h, w) -> log of their normalised (sharpened) distribution."""
    p = target.flatten(2).clamp_min(0) ** (1.0 / temperature)
    p = p / p.sum(dim=2, keepdim=True).clamp_min(_EPS)
    return torch.log(p.clamp_min(_EPS))


def kl_divergence(
    teacher_log_p: torch.Tensor, student_log_p: torch.Tensor, joint_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(teacher || student) on log-probabilities (B, J, N), teacher detached; batchmean."""
    per_joint = F.kl_div(student_log_p, teacher_log_p.detach(), reduction="none", log_target=True).sum(2)
    if joint_weight is not None:
        per_joint = per_joint * joint_weight
    return per_joint.sum() / per_joint.shape[0]


class MutualInfoLoss(nn.Module):
    """L_MI over TDMI's representations, returned term by term (weights applied)."""

    def __init__(self, cfg: MutualInfoConfig = MutualInfoConfig()):
        super().__init__()
        self.cfg = cfg

    def raise_mi(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        """Loss whose minimum maximises the information ``student`` shares with ``teacher``."""
        return kl_divergence(teacher, student)

    def lower_mi(
        self, teacher: torch.Tensor, student: torch.Tensor, joint_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss whose minimum lowers the shared information, bounded by the margin."""
        return F.relu(self.cfg.margin - kl_divergence(teacher, student, joint_weight))

    def forward(
        self,
        reps: TDMIRepresentations,
        head: nn.Module,
        target: torch.Tensor,
        target_weight: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        log_p = {
            name: spatial_log_softmax(head(rep), cfg.temperature) for name, rep in reps._asdict().items()
        }
        label = label_log_distribution(target, cfg.label_temperature)
        weight = target_weight.reshape(target.shape[0], target.shape[1])
        return {
            "mi_useful_noisy": cfg.useful_noisy * self.lower_mi(log_p["useful"], log_p["noisy"]),
            "mi_motion_useful": cfg.motion_useful * self.raise_mi(log_p["motion"], log_p["useful"]),
            "mi_useful_label": cfg.useful_label
            * (
                self.lower_mi(label, log_p["useful"], weight)
                + self.raise_mi(log_p["useful"], log_p["enhanced"])
            ),
            "mi_feature_label": cfg.feature_label
            * (
                self.lower_mi(label, log_p["feature"], weight)
                + self.raise_mi(log_p["feature"], log_p["enhanced"])
            ),
        }
