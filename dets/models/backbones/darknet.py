"""DarkNet-53 in TTFNet's layout (YOLOv3's trunk): a 3×3 stem, then five stages of a
stride-2 3×3 conv followed by residual blocks (1×1 to C/2, 3×3 back to C); every conv is
conv + BN + LeakyReLU(0.1)."""

from torch import nn

from ..layers import conv_bn_act, freeze, freeze_batch_norm
from .base import ChainBackbone, SeedUnit, check_frozen_stages, check_out_indices

STAGES = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))


def _leaky():
    return nn.LeakyReLU(0.1, inplace=True)


class DarkBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn_act(channels, channels // 2, 1, act=_leaky())
        self.conv2 = conv_bn_act(channels // 2, channels, 3, act=_leaky())

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class DarkNet53(nn.Module):
    """Returns the outputs of stages 2..5 (strides 4, 8, 16, 32; 128, 256, 512, 1024 channels).

    Args:
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 also stages 1..k.
        frozen_bn: replace every BatchNorm by FrozenBatchNorm2d.
        out_indices: which of the four maps to return (default all).
    """

    def __init__(self, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        super().__init__()
        check_frozen_stages("DarkNet-53", frozen_stages, len(STAGES))
        self.out_indices = check_out_indices("DarkNet-53", out_indices, len(STAGES) - 1)
        self.stem = conv_bn_act(3, 32, 3, act=_leaky())
        channels = 32
        for i, (out, blocks) in enumerate(STAGES):
            layers = [conv_bn_act(channels, out, 3, stride=2, act=_leaky())]
            layers += [DarkBlock(out) for _ in range(blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            channels = out
        self.out_channels = [STAGES[1 + i][0] for i in self.out_indices]
        self.out_strides = [4 * 2**i for i in self.out_indices]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")
        if frozen_stages >= 0:
            freeze(self.stem)
        for i in range(1, frozen_stages + 1):
            freeze(getattr(self, f"layer{i}"))
        if frozen_bn:
            freeze_batch_norm(self)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        features = []
        for i in range(2, len(STAGES) + 1):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return [features[i] for i in self.out_indices]


# DarkNet-19 as ssds.pytorch's darknet_19: (width, 3x3 convs) per block; a block's first 3x3
# conv is followed by (1x1 to width/2, 3x3 back) pairs; 2x2 max-pools between blocks.
DARKNET19_BLOCKS = ((32, 1), (64, 1), (128, 2), (256, 2), (512, 3), (1024, 3))
DARKNET19_STAGE_ENDS = (1, 3, 6, 9, 13, 17)  # the seed's unit indices; M units open a stage
DARKNET19_MAP_STAGES = (2, 3, 4, 5)


class DarkNet19(ChainBackbone):
    """Returns the outputs of stages 2..5 (strides 4, 8, 16, 32; 128, 256, 512, 1024 channels);
    the stem is the first 3x3 conv, stage 1 a pool and the 64-wide conv (frozen_stages <= 5, as
    DarkNet-53). Keys follow the seed's ``base.{i}.conv.{k}`` (i counts its max-pools too), so a
    seed checkpoint's base loads as is; the seed's feature layers 12 and 16 are maps 2 and 3."""

    def __init__(self, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        units, channels = [], 3
        for b, (width, convs) in enumerate(DARKNET19_BLOCKS):
            if b > 0:
                units.append(nn.MaxPool2d(2, 2))
            units.append(SeedUnit(list(conv_bn_act(channels, width, 3, act=_leaky()))))
            for _ in range(convs - 1):
                pair = [
                    *conv_bn_act(width, width // 2, 1, act=_leaky()),
                    *conv_bn_act(width // 2, width, 3, act=_leaky()),
                ]
                units.append(SeedUnit(pair))
            channels = width
        for m in nn.Sequential(*units).modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")
        super().__init__(
            "DarkNet-19",
            units,
            "base",
            DARKNET19_STAGE_ENDS,
            DARKNET19_MAP_STAGES,
            [128, 256, 512, 1024],
            [4, 8, 16, 32],
            out_indices,
            frozen_stages,
            frozen_bn,
        )
