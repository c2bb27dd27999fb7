"""Building blocks shared by the backbone and the TDMI modules."""

from tdmi.model.layers.blocks import BasicBlock, Bottleneck, conv_bn

__all__ = ["BasicBlock", "Bottleneck", "conv_bn"]
