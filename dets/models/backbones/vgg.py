"""VGG16 (Simonyan & Zisserman 2015) conv trunks, one definition for both of its uses.

- ``VGG16()``, the Faster R-CNN body: conv1_1..conv5_3 with their ReLUs, without the last
  max-pool, so the one feature map has stride 16 and 512 channels.
- ``VGG16(ssd=True)``, ssd.pytorch's base network (the ``vgg16`` of ssds.pytorch): pool3 in ceil
  mode, then after conv5_3 pool5 (3×3, stride 1, padding 1), conv6 (the classifier's fc6 as a 3×3
  conv with dilation 6, 1024 channels) and conv7 (fc7 as a 1×1 conv, 1024 channels). It returns
  conv4_3 (ReLU output, 512 channels, stride 8: SSD's first source) and conv7 (1024, stride 16).

Module indices are torchvision's ``vgg16().features`` (keys ``features.{i}.weight/bias``; conv6
and conv7 are ``features.31`` and ``features.33`` as in ssd.pytorch's ``vgg`` list), so a user's
torchvision ImageNet checkpoint loads into conv1..conv5 as is.
"""

import torch
from torch import nn

from ..layers import freeze
from .base import check_frozen_stages, check_out_indices

# Output channels of each conv, one tuple per block conv1..conv5; a 2x2 max-pool follows every
# block but the last.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG16_STRIDE = 16
# ssd.pytorch's conv6 / conv7 (fc6 / fc7 as convolutions) and the dilation of conv6.
SSD_FC_CHANNELS = 1024
SSD_FC6_DILATION = 6
SSD_STRIDES = (8, 16)
# The block whose output (before its max-pool) is SSD's first source: conv4.
SSD_SOURCE_BLOCK = 3
# The max-pool that ssd.pytorch runs in ceil mode (after conv3, so that 300 gives 38×38).
SSD_CEIL_POOL_BLOCK = 2


class VGG16(nn.Module):
    """VGG16 trunk: images [B, 3, H, W] -> [conv5_3 [B, 512, H // 16, W // 16]], or with ``ssd``
    [conv4_3 [B, 512, ⌈H / 8⌉', W'], conv7 [B, 1024, ...]] (pool3 rounds up, the others down).

    Args:
        frozen_stages: the ResNet numbering, so that one value means the same depth for every
            body: -1 trains everything; k >= 0 freezes blocks conv1..conv{k+1} (conv1 plays the
            stem). faster-rcnn.pytorch freezes conv1 and conv2, i.e. frozen_stages=1. At most 4,
            or 5 with ``ssd`` (pool5, conv6 and conv7 are the last stage).
        out_indices: with ``ssd``, which of (conv4_3, conv7) to return; the plain trunk has one map.
        ssd: ssd.pytorch's variant (see the module doc).

    VGG16 has no BatchNorm: ``frozen_bn`` is accepted (the backbone contract) and changes nothing.
    """

    def __init__(self, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None, ssd: bool = False):
        super().__init__()
        name = "VGG16 (SSD)" if ssd else "VGG16"
        check_frozen_stages(name, frozen_stages, len(VGG16_BLOCKS) - (0 if ssd else 1))
        self.out_indices = check_out_indices(name, out_indices, len(SSD_STRIDES) if ssd else 1)
        layers, block_ends = [], []
        channels = 3
        for i, block in enumerate(VGG16_BLOCKS):
            for width in block:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            if i < len(VGG16_BLOCKS) - 1:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ssd and i == SSD_CEIL_POOL_BLOCK))
            block_ends.append(len(layers))
        if ssd:
            layers += [
                nn.MaxPool2d(3, stride=1, padding=1),
                nn.Conv2d(channels, SSD_FC_CHANNELS, 3, padding=SSD_FC6_DILATION, dilation=SSD_FC6_DILATION),
                nn.ReLU(inplace=True),
                nn.Conv2d(SSD_FC_CHANNELS, SSD_FC_CHANNELS, 1),
                nn.ReLU(inplace=True),
            ]
            block_ends.append(len(layers))
            # Where each returned map is taken: conv4_3's ReLU (before pool4) and conv7's.
            self.taps = [block_ends[SSD_SOURCE_BLOCK] - 1, len(layers)]
            all_channels, all_strides = [VGG16_BLOCKS[SSD_SOURCE_BLOCK][-1], SSD_FC_CHANNELS], list(SSD_STRIDES)
        else:
            self.taps = [len(layers)]
            all_channels, all_strides = [VGG16_BLOCKS[-1][-1]], [VGG16_STRIDE]
        self.taps = [self.taps[i] for i in self.out_indices]
        self.features = nn.Sequential(*layers[: self.taps[-1]])  # later layers are not built
        self.out_channels = [all_channels[i] for i in self.out_indices]
        self.out_strides = [all_strides[i] for i in self.out_indices]
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if frozen_stages >= 0:
            freeze(self.features[: block_ends[frozen_stages]])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps, x, start = [], images, 0
        for tap in self.taps:
            x = self.features[start:tap](x)
            maps.append(x)
            start = tap
        return maps
