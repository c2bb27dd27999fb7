"""TDMI model library: HRNet backbone, temporal difference encoder, representation
disentanglement, mutual-information losses, heatmap codec, checkpoints and export.

    from tdmi import model
    net = model.build_model("tdmi-tiny")            # or ("hrnet-w32-256x192", "pose_hrnet_w32_256x192.pth")
    heatmaps = net(clips)                            # (B, T, 3, H, W) -> (B, J, H/4, W/4)
"""

from tdmi.model import ops
from tdmi.model.checkpoint import CheckpointError
from tdmi.model.presets import PRESETS, ModelPreset, build_model, get_preset

__all__ = ["PRESETS", "CheckpointError", "ModelPreset", "build_model", "get_preset", "ops"]
