"""DetNet-59 (Li et al. 2018, "DetNet: A Backbone network for Object Detection").

ResNet-50's stem and stages 1-3 (C2..C4, strides 4, 8, 16), then two more stages, layer4 (C5) and
layer5 (C6), that keep stride 16 and 1024 channels. Each is a BottleneckB (dilated 3x3, 1x1
projection shortcut ``extra_conv``) followed by two BottleneckA (dilated 3x3, identity shortcut).
State-dict keys are those of the published ``detnet59.pth`` (guoruoqian/DetNet_pytorch):
``conv1``, ``bn1``, ``layer1``..``layer5``, ``layerN.0.extra_conv.{0,1}``, and ``fc`` (the
ImageNet classifier, not built here).
"""

import torch
from torch import nn

from .base import check_out_indices
from .resnet import Bottleneck, ResNet, init_resnet_weights

DETNET_STAGES = 2  # stages added after ResNet-50's layer3
DETNET_BLOCKS = 3  # per added stage: one BottleneckB, then BottleneckA
DETNET_CHANNELS = 1024
DETNET_DILATION = 2
DETNET_STRIDE = 16


class DetNetBottleneck(Bottleneck):
    """DetNet's BottleneckB (``projection=True``: 1x1 conv + BN shortcut ``extra_conv``) or
    BottleneckA (identity shortcut); both keep the size and use a dilated 3x3 conv.
    [B, channels, H, W] -> [B, channels, H, W]."""

    def __init__(self, channels: int, projection: bool):
        super().__init__(channels, channels // Bottleneck.expansion, dilation=DETNET_DILATION)
        self.extra_conv = (
            nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
            if projection
            else None
        )

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.extra_conv is None else self.extra_conv(x)


def detnet_stage(channels: int = DETNET_CHANNELS, blocks: int = DETNET_BLOCKS) -> nn.Sequential:
    return nn.Sequential(*(DetNetBottleneck(channels, projection=i == 0) for i in range(blocks)))


class DetNet59(ResNet):
    """DetNet-59 trunk: images [B, 3, H, W] -> [C2, C3, C4, C5, C6] with channels
    (256, 512, 1024, 1024, 1024) and strides (4, 8, 16, 16, 16).

    Args:
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 also layer1..layerk
            (DetNet's FIXED_BLOCKS=1 is frozen_stages=1). At most 5.
        frozen_bn: replace every BatchNorm by FrozenBatchNorm2d (DetNet freezes them all).
    """

    def __init__(self, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        super().__init__(50, out_indices=(0, 1, 2))
        for i in range(DETNET_STAGES):
            setattr(self, f"layer{self.num_stages + 1 + i}", detnet_stage())
        self.num_stages += DETNET_STAGES
        self.out_channels += [DETNET_CHANNELS] * DETNET_STAGES
        self.out_strides += [DETNET_STRIDE] * DETNET_STAGES
        self.select_maps(check_out_indices("DetNet-59", out_indices, self.num_stages))
        # Re-initialise the whole trunk so the added stages get the same scheme as the rest.
        init_resnet_weights(self)
        self.freeze_stages(frozen_stages, frozen_bn)
