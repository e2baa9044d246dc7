"""Feature pyramids (Lin et al. 2017, "Feature Pyramid Networks for Object Detection"), and
DetNet's variant whose three coarsest levels share stride 16.

Each top-down step resizes the coarser map to the lateral's exact size rather than by x2, so
odd input sizes (a 13x13 C3 under a 7x7 C4) still line up.
"""

import torch
import torch.nn.functional as F
from torch import nn

FPN_CHANNELS = 256
DETNET_LEVELS = 5  # C2..C6 in, P2..P6 out


def upsample_add(top: torch.Tensor, lateral: torch.Tensor, mode: str, align_corners: bool | None = None):
    """top [B, C, h, w] resized to lateral's [H, W], plus lateral [B, C, H, W]."""
    return F.interpolate(top, size=lateral.shape[-2:], mode=mode, align_corners=align_corners) + lateral


def init_fpn_conv(conv: nn.Conv2d) -> None:
    # Detectron's FPN init ("c2_xavier_fill"): uniform with variance 1/fan_in, zero bias.
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.zeros_(conv.bias)


class LastLevelP6P7(nn.Module):
    """RetinaNet's and FCOS's two extra levels from P5 (FCOS: ``RETINANET.USE_C5 False``):
    P6 = conv3x3/2(P5), P7 = conv3x3/2(ReLU(P6))."""

    def __init__(self, channels: int):
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        for conv in (self.p6, self.p7):
            init_fpn_conv(conv)

    def forward(self, p5: torch.Tensor) -> list[torch.Tensor]:
        p6 = self.p6(p5)
        return [p6, self.p7(F.relu(p6))]


TOP_LEVELS = ("max_pool", "p6p7")


class FPN(nn.Module):
    """FPN over the trunk's maps, finest first: [C2, C3, C4, C5] -> [P2, P3, P4, P5, P6] (Faster
    R-CNN), or with ``top="p6p7"`` [C3, C4, C5] -> [P3, P4, P5, P6, P7] (FCOS, RetinaNet); every
    map `out_channels` wide.

    P5 = lateral(C5); Pk = up(Pk+1) + lateral(Ck) with nearest up-sampling (the paper's); each
    merged map then gets a 3x3 output conv. top "max_pool": P6 = P5 sub-sampled by 2 (max-pool,
    kernel 1, stride 2, as FPN_Pytorch and Detectron); "p6p7": ``LastLevelP6P7``. Strides are
    the trunk's, then twice the last for each extra level.
    """

    def __init__(self, in_channels: list[int], out_channels: int = FPN_CHANNELS, top: str = "max_pool"):
        super().__init__()
        if top not in TOP_LEVELS:
            raise ValueError(f"top must be one of {TOP_LEVELS}, got {top!r}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.top = LastLevelP6P7(out_channels) if top == "p6p7" else None
        self.out_channels = out_channels
        for conv in [*self.lateral, *self.output]:
            init_fpn_conv(conv)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.lateral):
            raise ValueError(f"FPN expects {len(self.lateral)} feature maps, got {len(features)}")
        merged = self.lateral[-1](features[-1])
        pyramid = [self.output[-1](merged)]
        for i in range(len(features) - 2, -1, -1):
            merged = upsample_add(merged, self.lateral[i](features[i]), "nearest")
            pyramid.insert(0, self.output[i](merged))
        if self.top is None:
            return [*pyramid, F.max_pool2d(pyramid[-1], kernel_size=1, stride=2)]
        return [*pyramid, *self.top(pyramid[-1])]


class DetNetFPN(nn.Module):
    """DetNet-59's FPN: [C2, C3, C4, C5, C6] -> [P2, P3, P4, P5, P6], strides (4, 8, 16, 16, 16).

    P6 = top(C6); P5 = lateral5(C5) + P6; P4 = lateral4(C4) + P5 (same size: no up-sampling, no
    smoothing); P3 = smooth3(up(P4) + lateral3(C3)); P2 = smooth2(up(P3) + lateral2(C2)).
    Up-sampling is bilinear with align_corners=True: DetNet_pytorch ran on PyTorch < 0.4, whose
    bilinear up-sampling aligned corners.
    """

    def __init__(self, in_channels: list[int], out_channels: int = FPN_CHANNELS):
        super().__init__()
        c2, c3, c4, c5, c6 = in_channels
        self.top = nn.Conv2d(c6, out_channels, 1)
        self.lateral5 = nn.Conv2d(c5, out_channels, 1)
        self.lateral4 = nn.Conv2d(c4, out_channels, 1)
        self.lateral3 = nn.Conv2d(c3, out_channels, 1)
        self.lateral2 = nn.Conv2d(c2, out_channels, 1)
        self.smooth3 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.smooth2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.out_channels = out_channels
        for conv in self.children():
            init_fpn_conv(conv)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != DETNET_LEVELS:
            raise ValueError(f"DetNetFPN expects {DETNET_LEVELS} feature maps (C2..C6), got {len(features)}")
        c2, c3, c4, c5, c6 = features
        p6 = self.top(c6)
        p5 = self.lateral5(c5) + p6
        p4 = self.lateral4(c4) + p5
        p3 = self.smooth3(upsample_add(p4, self.lateral3(c3), "bilinear", align_corners=True))
        p2 = self.smooth2(upsample_add(p3, self.lateral2(c2), "bilinear", align_corners=True))
        return [p2, p3, p4, p5, p6]
