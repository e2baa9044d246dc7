"""CenterNet's up-sampling neck as CenterX builds it (``CenternetDeconv``): three layers, each
3×3 conv → BN → ReLU → 4×4 transposed conv (stride 2) → BN → ReLU, from the backbone's last map
(stride 32) to stride 4.

CenterX's ``DECONV_CHANNEL`` is [backbone channels, 256, 128, 64]: [512, 256, 128, 64] for
ResNet-18 and [2048, 256, 128, 64] for ResNet-50. Its default 3×3 conv is a modulated deformable
conv (the ``resdcn`` nets, ``deform_conv3x3``); with ``USE_DEFORM False`` it is a plain conv
(``plain_conv3x3``, the ``centernet_r*`` nets).
"""

import math
from collections.abc import Callable

import torch
from torch import nn

from dets.ops import ModulatedDeformConv2dPack

CENTERX_CHANNELS = (256, 128, 64)
UP_KERNEL = 4


def plain_conv3x3(in_channels: int, out_channels: int) -> nn.Module:
    """CenterX's ``DeformConvWithOff`` with ``use_deform=False``: a 3×3 conv with a bias."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def deform_conv3x3(in_channels: int, out_channels: int) -> nn.Module:
    """CenterX's ``DeformConvWithOff`` with ``use_deform=True``: a 3×3 modulated deformable conv
    (one offset group) with a bias, its offsets and masks predicted from the input."""
    return ModulatedDeformConv2dPack(in_channels, out_channels, 3, padding=1)


def fill_up_weights(weight: torch.Tensor) -> None:
    """CenterNet's ``fill_up_weights`` (kept by CenterX) on a transposed conv's weight
    [in, out, k, k]: the bilinear up-sampling kernel from every input channel to output
    channel 0. On this dense (not depthwise) layer the other output channels keep PyTorch's
    initialisation, as in both originals."""
    k = weight.shape[-1]
    f = math.ceil(k / 2)
    centre = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - (torch.arange(k, dtype=torch.float64) / f - centre).abs()
    with torch.no_grad():
        weight[:, 0] = (ramp[:, None] * ramp[None, :]).to(weight.dtype)


class UpLayer(nn.Sequential):
    """conv → BN → ReLU → ConvTranspose2d(k 4, s 2, p 1, no bias, bilinear init) → BN → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, conv_layer: Callable[[int, int], nn.Module]):
        up = nn.ConvTranspose2d(out_channels, out_channels, UP_KERNEL, stride=2, padding=1, bias=False)
        fill_up_weights(up.weight)
        super().__init__(
            conv_layer(in_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            up,
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class CenterNetNeck(nn.Sequential):
    """Three ×2 up-sampling layers.

    Args:
        in_channels: channels of the backbone's stride-32 map.
        channels: output channels of the three layers (CenterX: 256, 128, 64).
        conv_layer: builds each layer's 3×3 conv from (in, out) channels: ``plain_conv3x3`` or
            ``deform_conv3x3`` (the ``resdcn`` nets).
    """

    def __init__(
        self,
        in_channels: int,
        channels=CENTERX_CHANNELS,
        conv_layer: Callable[[int, int], nn.Module] = plain_conv3x3,
    ):
        if len(channels) != 3:
            raise ValueError(f"CenterNetNeck has three layers, got channels {tuple(channels)}")
        widths = [in_channels, *channels]
        super().__init__(*(UpLayer(widths[i], widths[i + 1], conv_layer) for i in range(3)))
        self.out_channels = widths[-1]
