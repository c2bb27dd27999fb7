"""Operators the model needs that plain PyTorch lacks."""

from tdmi.model.ops.deform_conv import deform_conv2d

__all__ = ["deform_conv2d"]
