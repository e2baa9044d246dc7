"""TTFNet's head (Liu et al., "Training-Time-Friendly Network for Real-Time Object
Detection", AAAI 2020): three ×2 bilinear up-sampling stages from stride 32 to stride 4
with conv shortcuts from the backbone, then a heatmap branch and a box-distance branch.

The up-sampling convs are modulated deformable convs (DCNv2) in the paper; here that is the
``dcn`` option (``--dcn``), and plain 3×3 convs by default (see the README for why).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from dets.ops import ModulatedDeformConv2dPack


class UpStage(nn.Sequential):
    """3×3 conv + BN + ReLU, then ×2 bilinear up-sampling (corners aligned, as the original).

    dcn: the 3×3 conv is a modulated deformable conv (DCNv2, mmcv's ModulatedDeformConvPack
    layout: ``dets.ops.ModulatedDeformConv2dPack``), as in the paper.
    """

    def __init__(self, in_channels: int, out_channels: int, dcn: bool = False):
        conv = ModulatedDeformConv2dPack if dcn else nn.Conv2d
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.UpsamplingBilinear2d(scale_factor=2),
        )


class Shortcut(nn.Sequential):
    """`num_convs` 3×3 convs from a backbone level, ReLU between them but not after the last."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int):
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1))
            if i < num_convs - 1:
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _branch(in_channels: int, mid_channels: int, num_convs: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(num_convs):
        conv = nn.Conv2d(in_channels if i == 0 else mid_channels, mid_channels, 3, padding=1)
        layers += [conv, nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(mid_channels, out_channels, 1))
    return nn.Sequential(*layers)


class TTFHead(nn.Module):
    """Args:
    in_channels: channels of the backbone's four levels (strides 4, 8, 16, 32).
    num_classes: heatmap channels.
    planes: channels after each up-sampling stage (stride 16, 8, 4).
    shortcut_convs: convs in the shortcut from the stride-16, 8 and 4 levels.
    head_conv, hm_convs: width and depth of the heatmap branch.
    wh_conv, wh_convs: width and depth of the box branch (1 for R18, 2 otherwise in the paper).
    wh_offset_base: the box branch predicts relu(x) * wh_offset_base input pixels.
    prior_prob: initial heatmap probability (bias -log((1 - p) / p)).
    dcn: modulated deformable 3×3 convs in the up-sampling stages (the paper), else plain ones.
    """

    def __init__(
        self,
        in_channels,
        num_classes: int,
        planes=(256, 128, 64),
        shortcut_convs=(1, 2, 3),
        head_conv: int = 128,
        hm_convs: int = 2,
        wh_conv: int = 64,
        wh_convs: int = 2,
        wh_offset_base: float = 16.0,
        prior_prob: float = 0.01,
        dcn: bool = False,
    ):
        super().__init__()
        if len(in_channels) != 4 or len(planes) != 3 or len(shortcut_convs) != 3:
            raise ValueError("TTFHead needs 4 backbone levels, 3 planes and 3 shortcut depths")
        channels = [in_channels[-1], *planes]
        self.up_stages = nn.ModuleList(UpStage(channels[i], channels[i + 1], dcn) for i in range(3))
        self.shortcuts = nn.ModuleList(Shortcut(in_channels[-i - 2], planes[i], shortcut_convs[i]) for i in range(3))
        self.hm = _branch(planes[-1], head_conv, hm_convs, num_classes)
        self.wh = _branch(planes[-1], wh_conv, wh_convs, 4)
        self.wh_offset_base = wh_offset_base
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float):
        # A DCN keeps its own initialisation: mmcv's uniform weight and a zero offset branch,
        # so that it starts as a plain conv (the seed's init_weights skips it likewise).
        offset_convs = {id(m.conv_offset) for m in self.up_stages.modules() if isinstance(m, ModulatedDeformConv2dPack)}
        for m in [*self.up_stages.modules(), *self.shortcuts.modules()]:
            if isinstance(m, nn.Conv2d) and id(m) not in offset_convs:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for branch, std in ((self.hm, 0.01), (self.wh, 0.001)):
            for m in branch.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, std=std)
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.hm[-1].bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """features: four maps, strides 4..32. Returns heatmap logits [B, C, H/4, W/4] and box
        distances (left, top, right, bottom) in input pixels [B, 4, H/4, W/4]."""
        x = features[-1]
        for i, (up, shortcut) in enumerate(zip(self.up_stages, self.shortcuts, strict=True)):
            x = up(x) + shortcut(features[-i - 2])
        return self.hm(x), F.relu(self.wh(x)) * self.wh_offset_base
