"""Backbones: each returns a list of feature maps, finest first, and declares
``out_channels`` and ``out_strides`` for them."""

from .darknet import DarkNet53
from .detnet import DetNet59
from .resnet import ResNet
from .vgg import VGG16

__all__ = ["DarkNet53", "DetNet59", "ResNet", "VGG16"]
