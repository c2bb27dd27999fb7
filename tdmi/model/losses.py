"""Training losses: joint-weighted heatmap MSE and the full TDMI objective."""

from __future__ import annotations

import torch
from torch import nn

from tdmi.model.mutual_info import MutualInfoConfig, MutualInfoLoss
from tdmi.model.tdmi import TDMI

__all__ = ["TDMILoss", "heatmap_mse"]


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """0.5 * mean squared error of (B, J, h, w) heatmaps, each joint scaled by its weight (B, J)."""
    w = weight.reshape(pred.shape[0], pred.shape[1], 1, 1)
    return 0.5 * ((pred - target) * w).pow(2).mean()


class TDMILoss(nn.Module):
    """Heatmap MSE + alpha * L_MI (the paper's alpha is 1). Returns every term and their sum
    under ``"loss"``; L_MI is normalised like the MSE (see ``tdmi.model.mutual_info``).

    With L_MI's fitted readouts, ``readout_fit`` (their heatmap MSE on detached representations,
    the mean over the four) is in the sum too: it trains the readouts and nothing else. ``head``
    is the model's heatmap head, the readouts' starting point.
    """

    def __init__(
        self, alpha: float = 1.0, mi: MutualInfoConfig = MutualInfoConfig(), head: nn.Module | None = None
    ):
        super().__init__()
        self.alpha = alpha
        self.mutual_info = MutualInfoLoss(mi, head) if alpha > 0 else None

    def forward(
        self, model: TDMI, clips: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        reps = model.forward_features(clips)
        heatmaps = model.forward_head(reps.enhanced)
        terms = {"heatmap": heatmap_mse(heatmaps, target, weight)}
        if self.mutual_info is not None:
            if model.rdm is None and self.mutual_info.cfg.uses_noisy:
                raise ValueError("a TDMI without RDM has no Mu, Mn: switch off the L_MI terms that read them")
            mi_terms = self.mutual_info(reps, model.head, target, weight)
            terms.update({k: self.alpha * v for k, v in mi_terms.items()})
            readouts = self.mutual_info.readouts
            if readouts is not None:
                fits = [heatmap_mse(h, target, weight) for h in readouts.fit_heatmaps(reps).values()]
                terms["readout_fit"] = sum(fits, torch.zeros((), device=clips.device)) / len(fits)
        terms["loss"] = sum(terms.values(), torch.zeros((), device=clips.device))
        return terms
