"""Backbones: each returns a list of feature maps, finest first, and declares
``out_channels`` and ``out_strides`` for them."""

from .darknet import DarkNet53
from .resnet import ResNet

__all__ = ["DarkNet53", "ResNet"]
