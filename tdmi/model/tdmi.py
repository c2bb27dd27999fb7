"""TDMI: mutual-information-based temporal difference learning for pose in video (CVPR 2023).

A clip (B, T, 3, H, W) of T = 2d+1 crops around the key frame (in the middle) goes through a
shared HRNet backbone. The Temporal Difference Encoder turns the differences of consecutive
frames' features at each of the four stages into a motion feature M; the Representation
Disentanglement Module splits M by channel masks into a useful part Mu and a noisy part Mn; Mu
and the key frame's stage-4 feature F (TDMI-ST: a feature of the whole clip) are fused into the
enhanced feature F~, from which a 3x3 conv gives heatmaps. The mutual-information objective on
(M, Mu, Mn, F, F~) lives in ``tdmi.model.mutual_info``.

Choices the paper leaves open, and what this implementation does:
- All stages meet at ``width`` channels: each stage's stacked differences go through a 3x3
  conv to ``width`` channels before its residual blocks (stage 1 comes in with 256).
- The DCNv2 of each stage predicts offsets and modulation scalars from that stage's motion
  feature and samples that same feature; a sigmoid bounds the modulation scalars to (0, 1);
  the predicting conv starts at zero, so training starts from zero offsets and scalars 0.5.
- The motion feature, Mu, Mn, F and F~ all have ``width`` channels, so the heatmap head is the
  shared head that the mutual-information estimators read all of them through.
- F~ = F + fusion(Mu, F), the fusion ending in a 1x1 conv-BN whose scale starts at zero: a
  fresh TDMI on a pose-trained backbone starts out as that single-frame model (the heatmap head
  is initialised from the HRNet file's 1x1 ``final_layer``, as the centre of its 3x3 kernel),
  and the temporal branch adds to it as it learns. Without this the randomly initialised fusion
  hid the pretrained key-frame feature: on our synthetic data a TDMI started from a trained
  single-frame backbone scored 3 mAP after 400 steps where the backbone alone scored 35.
- The backbone trains with the rest by default; ``freeze_backbone`` freezes its weights and
  keeps its BatchNorm layers in eval mode.
- Eq. 3 as the paper has it: residual blocks (``offset_blocks`` of them) then a convolution
  predict each stage's DCN offsets and modulation scalars. ``offset_blocks=0`` is the light form
  (one convolution), the form of ``tdmi-tiny`` and of the shipped demo checkpoint; its cost
  against the paper's form is measured in ``docs/model/mutual_info.md``.

Ablation switches (the rows of the paper's Tables 5-6; ``configs/ablations/``):
``tde_stages`` (which backbone stages, 1..4, feed the TDE), ``stage_fusion`` (``progressive``:
Eq. 4's incremental accumulation; ``concat``: the stages' motion features concatenated and
fused by one 3x3 conv), ``deform`` (off: a plain 3x3 conv instead of the DCN) and ``rdm`` (off:
Mu = Mn = M, no gates; the L_MI terms on Mu and Mn must then be off). Every switch leaves the
zero-initialised fusion branch alone, so every variant starts as its single-frame HRNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, NamedTuple

import torch
from torch import nn

from tdmi.model.hrnet import HRNetConfig, PoseHighResolutionNet
from tdmi.model.layers.blocks import BasicBlock, conv_bn
from tdmi.model.layers.deform import ModulatedDeformConv2d

__all__ = [
    "TDMI",
    "RepresentationDisentanglement",
    "TDMIConfig",
    "TDMIRepresentations",
    "TemporalDifferenceEncoder",
]


@dataclass(frozen=True)
class TDMIConfig:
    """TDMI from a few numbers; ``spatiotemporal`` selects TDMI-ST."""

    backbone: HRNetConfig = field(default_factory=lambda: HRNetConfig(width=48))
    radius: int = 2
    motion_blocks: tuple[int, int, int, int] = (3, 3, 2, 2)
    fusion_blocks: int = 2
    deform_groups: int = 1
    mask_reduction: int = 4
    spatiotemporal: bool = False
    freeze_backbone: bool = False
    offset_blocks: int = 2  # residual blocks before the conv predicting DCN offsets; 0: light form
    tde_stages: tuple[int, ...] = (1, 2, 3, 4)  # backbone stages whose differences feed the TDE
    stage_fusion: Literal["progressive", "concat"] = "progressive"
    deform: bool = True  # False: a plain 3x3 conv where each stage has its DCN
    rdm: bool = True  # False: no disentanglement, Mu = Mn = M

    def __post_init__(self) -> None:
        stages = list(self.tde_stages)
        if not stages or stages != sorted(set(stages)) or not set(stages) <= {1, 2, 3, 4}:
            raise ValueError(f"tde_stages must be increasing stage numbers in 1..4, got {stages}")
        if self.stage_fusion not in ("progressive", "concat"):
            raise ValueError(f"stage_fusion must be 'progressive' or 'concat', got {self.stage_fusion!r}")
        if self.offset_blocks < 0:
            raise ValueError(f"offset_blocks must be >= 0, got {self.offset_blocks}")

    @property
    def num_frames(self) -> int:
        return 2 * self.radius + 1


class TDMIRepresentations(NamedTuple):
    """What the mutual-information objective reads, each (B, width, h, w)."""

    motion: torch.Tensor  # M
    useful: torch.Tensor  # Mu
    noisy: torch.Tensor  # Mn
    feature: torch.Tensor  # F: key frame's stage-4 feature (TDMI-ST: the clip's)
    enhanced: torch.Tensor  # F~


class StageMotionEncoder(nn.Module):
    """One stage: stacked frame differences -> residual blocks -> motion-guided DCNv2 (Eq. 2-3)."""

    def __init__(
        self,
        in_channels: int,
        num_diffs: int,
        channels: int,
        blocks: int,
        deform_groups: int,
        offset_blocks: int,
        deform: bool,
        index: int,
    ):
        super().__init__()
        self.index = index  # which backbone stage feature (0-based) this encoder reads
        self.proj = conv_bn(in_channels * num_diffs, channels, 3)
        self.blocks = nn.Sequential(*[BasicBlock(channels, channels) for _ in range(blocks)])
        self.deform = (
            ModulatedDeformConv2d(
                channels, channels, 3, padding=1, deform_groups=deform_groups, offset_blocks=offset_blocks
            )
            if deform
            else None
        )
        self.conv = None if deform else nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, stage_features: List[torch.Tensor]) -> torch.Tensor:
        """Reads its own stage from all four stacked stage features (B, T, C_i, h, w)."""
        features = stage_features[self.index]
        b, t, c, h, w = features.shape
        diffs = (features[:, 1:] - features[:, :-1]).reshape(b, (t - 1) * c, h, w)
        motion = self.blocks(self.proj(diffs))
        if self.deform is not None:
            out = self.deform(motion, motion)
        else:
            assert self.conv is not None
            out = self.conv(motion)
        return self.relu(self.bn(out))


class TemporalDifferenceEncoder(nn.Module):
    """Motion features of the chosen stages, fused into M.

    ``progressive`` (Eq. 4): accumulated from the first chosen stage to the last,
    M = C4(C3(C2(C1(D1)+D2)+D3)+D4) with all four; ``concat``: M = C([D_i for the chosen i]).
    """

    def __init__(self, in_channels: List[int], num_frames: int, channels: int, cfg: TDMIConfig):
        super().__init__()
        stage_indices = [s - 1 for s in cfg.tde_stages]
        self.stages = nn.ModuleList(
            StageMotionEncoder(
                in_channels[i],
                num_frames - 1,
                channels,
                cfg.motion_blocks[i],
                cfg.deform_groups,
                cfg.offset_blocks,
                cfg.deform,
                i,
            )
            for i in stage_indices
        )
        progressive = cfg.stage_fusion == "progressive"
        self.accumulate = nn.ModuleList(
            conv_bn(channels, channels, 3) for _ in (stage_indices if progressive else [])
        )
        self.concat = None if progressive else conv_bn(len(stage_indices) * channels, channels, 3)

    def forward(self, stage_features: List[torch.Tensor]) -> torch.Tensor:
        diffs: List[torch.Tensor] = []
        for stage in self.stages:
            diffs.append(stage(stage_features))
        if self.concat is not None:
            return self.concat(torch.cat(diffs, dim=1))
        motion = diffs[0]
        for k, accumulate in enumerate(self.accumulate):
            motion = accumulate(diffs[k] if k == 0 else motion + diffs[k])
        return motion


class RepresentationDisentanglement(nn.Module):
    """Two independent channel gates on the pooled motion feature: useful Mu and noisy Mn."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.useful_gate = self._gate(channels, hidden)
        self.noisy_gate = self._gate(channels, hidden)

    @staticmethod
    def _gate(channels: int, hidden: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = motion.mean(dim=(2, 3))
        useful = motion * self.useful_gate(pooled)[:, :, None, None]
        noisy = motion * self.noisy_gate(pooled)[:, :, None, None]
        return useful, noisy


class TDMI(nn.Module):
    """Multi-frame pose estimator: clips (B, T, 3, H, W) -> heatmaps (B, J, H/4, W/4)."""

    def __init__(self, cfg: TDMIConfig = TDMIConfig()):
        super().__init__()
        self.cfg = cfg
        self.num_frames = cfg.num_frames
        self.key_index = cfg.radius
        width = cfg.backbone.width
        self.backbone = PoseHighResolutionNet(cfg.backbone, with_head=False)
        self.tde = TemporalDifferenceEncoder(
            [info.channels for info in self.backbone.feature_info], cfg.num_frames, width, cfg
        )
        self.rdm = RepresentationDisentanglement(width, cfg.mask_reduction) if cfg.rdm else None
        self.clip_fusion = conv_bn(cfg.num_frames * width, width, 1) if cfg.spatiotemporal else None
        branch_out = conv_bn(width, width, 1, relu=False)
        assert isinstance(branch_out[1], nn.BatchNorm2d)
        nn.init.zeros_(branch_out[1].weight)  # the temporal branch starts as a no-op
        self.fusion = nn.Sequential(
            conv_bn(2 * width, width, 3),
            *[BasicBlock(width, width) for _ in range(cfg.fusion_blocks)],
            branch_out,
        )
        self.head = nn.Conv2d(width, cfg.backbone.num_joints, 3, 1, 1)
        if cfg.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()  # its BatchNorm statistics stay as loaded, from the start

    def train(self, mode: bool = True) -> TDMI:
        super().train(mode)
        if self.cfg.freeze_backbone:
            self.backbone.eval()
        return self

    def forward_frame_features(self, frames: torch.Tensor) -> List[torch.Tensor]:
        """The backbone on single crops (N, 3, H, W): the four stage features (N, C_i, h, w).

        A frame's features depend on that crop alone, so a stream whose person keeps one crop box
        can compute them once and reuse them in every clip that holds the frame.
        """
        return self.backbone.forward_features(frames)

    def forward_clip_features(self, stage_features: List[torch.Tensor]) -> TDMIRepresentations:
        """Everything after the backbone, on per-frame features stacked per clip (B, T, C_i, h, w)."""
        motion = self.tde(stage_features)
        if self.rdm is not None:
            useful, noisy = self.rdm(motion)
        else:
            useful, noisy = motion, motion
        last = stage_features[-1]
        if self.clip_fusion is not None:
            feature = self.clip_fusion(last.flatten(1, 2))
        else:
            feature = last[:, self.key_index]
        enhanced = feature + self.fusion(torch.cat((useful, feature), dim=1))
        return TDMIRepresentations(motion, useful, noisy, feature, enhanced)

    def forward_features(self, clips: torch.Tensor) -> TDMIRepresentations:
        b, t = clips.shape[0], clips.shape[1]
        stage_features = [
            f.view(b, t, f.shape[1], f.shape[2], f.shape[3])
            for f in self.forward_frame_features(clips.flatten(0, 1))
        ]
        return self.forward_clip_features(stage_features)

    def forward_head(self, enhanced: torch.Tensor) -> torch.Tensor:
        return self.head(enhanced)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips).enhanced)

    def forward_from_frame_features(self, stage_features: List[torch.Tensor]) -> torch.Tensor:
        """Heatmaps from stacked ``forward_frame_features`` outputs: ``forward`` in two halves."""
        return self.forward_head(self.forward_clip_features(stage_features).enhanced)
