"""VGG16 (Simonyan & Zisserman 2015) conv trunk as the Faster R-CNN body: conv1_1..conv5_3 with
their ReLUs, without the last max-pool, so the one feature map has stride 16 and 512 channels.

Module indices are torchvision's ``vgg16().features`` (keys ``features.{i}.weight/bias``), so a
user's torchvision ImageNet checkpoint loads as is.
"""

import torch
from torch import nn

from ..layers import freeze
from .base import check_frozen_stages, check_out_indices

# Output channels of each conv, one tuple per block conv1..conv5; a 2x2 max-pool follows every
# block but the last.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG16_STRIDE = 16


class VGG16(nn.Module):
    """VGG16 conv1_1..conv5_3: images [B, 3, H, W] -> [features [B, 512, H // 16, W // 16]].

    Args:
        frozen_stages: the ResNet numbering, so that one value means the same depth for every
            body: -1 trains everything; k >= 0 freezes blocks conv1..conv{k+1} (conv1 plays the
            stem). faster-rcnn.pytorch freezes conv1 and conv2, i.e. frozen_stages=1. At most 4.

    VGG16 has no BatchNorm: ``frozen_bn`` is accepted (the backbone contract) and changes nothing.
    """

    out_channels = [VGG16_BLOCKS[-1][-1]]
    out_strides = [VGG16_STRIDE]

    def __init__(self, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        super().__init__()
        check_frozen_stages("VGG16", frozen_stages, len(VGG16_BLOCKS) - 1)
        check_out_indices("VGG16", out_indices, 1)
        layers, block_ends = [], []
        channels = 3
        for i, block in enumerate(VGG16_BLOCKS):
            for width in block:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            if i < len(VGG16_BLOCKS) - 1:
                layers.append(nn.MaxPool2d(2, 2))
            block_ends.append(len(layers))
        self.features = nn.Sequential(*layers)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if frozen_stages >= 0:
            freeze(self.features[: block_ends[frozen_stages]])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.features(images)]
