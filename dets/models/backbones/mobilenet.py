"""MobileNet V1 (Howard et al. 2017) and V2 (Sandler et al. 2018) trunks as ssds.pytorch v0.3.1
builds them (``lib/modeling/nets/mobilenet.py``), with its width multipliers.

Widths: ``max(int(c * m), 8)`` for every layer, the seed's rounding (a truncation with a floor
of 8, not torchvision's multiple-of-8 rounding); at m = 1 both agree.

Stages (frozen_stages counts them): the stem is every unit at stride 2, then one stage per
returned map (strides 4, 8, 16, 32). V1's maps are the seed's units 3, 5, 11, 13 and V2's its
units 3, 6, 13, 17 (the seed's SSD configs take 11, 13 and 13, 17).

Checkpoint keys: V1 keeps the seed's units, ``base.{i}.conv.{k}`` (its detectors' ``base``), so
the base of a seed checkpoint loads as is. V2 follows torchvision's ``mobilenet_v2().features``
(``features.{i}...``, the 1280-channel ``features.18`` is not part of the trunk), so a user's
torchvision checkpoint loads; this differs from the seed in two places, both torchvision's: the
t = 1 unit has no expansion 1x1 conv, and the stem uses ReLU6.
"""

from torch import nn

from .base import ChainBackbone, SeedUnit

MIN_WIDTH = 8  # the seed's min_depth
STRIDES = [4, 8, 16, 32]
# (output width, stride) of the seed's V1 units after the 3x3 stem of 32.
V1_STEM = 32
V1_UNITS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))
V1_STAGE_ENDS = (2, 4, 6, 12, 14)
V1_MAP_WIDTHS = (128, 256, 512, 1024)
# The V2 paper's (expansion t, width c, repeats n, stride s) table after the 3x3 stem of 32.
V2_STEM = 32
V2_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
V2_STAGE_ENDS = (2, 4, 7, 14, 18)
V2_MAP_WIDTHS = (24, 32, 96, 320)
MAP_STAGES = (1, 2, 3, 4)


def scaled(width: int, multiplier: float) -> int:
    """The seed's width rounding: truncate, at least MIN_WIDTH."""
    return max(int(width * multiplier), MIN_WIDTH)


def conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1, act=None) -> list[nn.Module]:
    """Bias-free conv + BatchNorm (+ act), 'same' padding, as a list of layers."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    return layers + ([act] if act is not None else [])


class InvertedResidual(nn.Module):
    """V2's unit: [1x1 expand + BN + ReLU6 (t > 1)], 3x3 depthwise + BN + ReLU6, 1x1 linear + BN;
    the input is added when the shape is kept. Keys as torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers = []
        if expansion != 1:
            layers.append(nn.Sequential(*conv_bn(in_channels, hidden, 1, act=nn.ReLU6(inplace=True))))
        layers.append(nn.Sequential(*conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6(inplace=True))))
        layers += conv_bn(hidden, out_channels, 1)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")


class MobileNetV1(ChainBackbone):
    """images [B, 3, H, W] -> maps at strides 4, 8, 16, 32 with widths 128, 256, 512, 1024 times
    `multiplier` (rounded as the module doc says). Keywords: the backbone contract."""

    def __init__(self, multiplier: float = 1.0, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        channels = scaled(V1_STEM, multiplier)
        units = [SeedUnit(conv_bn(3, channels, 3, 2, act=relu()))]
        for width, stride in V1_UNITS:
            out = scaled(width, multiplier)
            units.append(
                SeedUnit(
                    conv_bn(channels, channels, 3, stride, channels, relu()) + conv_bn(channels, out, 1, act=relu())
                )
            )
            channels = out
        init_weights(nn.Sequential(*units))
        widths = [scaled(w, multiplier) for w in V1_MAP_WIDTHS]
        super().__init__(
            f"MobileNetV1-{multiplier}",
            units,
            "base",
            V1_STAGE_ENDS,
            MAP_STAGES,
            widths,
            STRIDES,
            out_indices,
            frozen_stages,
            frozen_bn,
        )


class MobileNetV2(ChainBackbone):
    """images [B, 3, H, W] -> maps at strides 4, 8, 16, 32 with widths 24, 32, 96, 320 times
    `multiplier` (rounded as the module doc says). Keywords: the backbone contract."""

    def __init__(self, multiplier: float = 1.0, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        channels = scaled(V2_STEM, multiplier)
        units = [nn.Sequential(*conv_bn(3, channels, 3, 2, act=nn.ReLU6(inplace=True)))]
        for expansion, width, repeats, stride in V2_TABLE:
            out = scaled(width, multiplier)
            for r in range(repeats):
                units.append(InvertedResidual(channels, out, stride if r == 0 else 1, expansion))
                channels = out
        init_weights(nn.Sequential(*units))
        widths = [scaled(w, multiplier) for w in V2_MAP_WIDTHS]
        super().__init__(
            f"MobileNetV2-{multiplier}",
            units,
            "features",
            V2_STAGE_ENDS,
            MAP_STAGES,
            widths,
            STRIDES,
            out_indices,
            frozen_stages,
            frozen_bn,
        )
