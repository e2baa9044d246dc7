"""FCOS's head (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019),
as VoVNet-FCOS (``fcos_core/modeling/rpn/fcos/fcos.py``): shared by every pyramid level, two
towers of 3×3 conv + GroupNorm + ReLU, class logits and centerness on the classification tower
(the later FCOS option ``centerness_on_reg`` moves centerness to the regression tower), box
distances exp(scale_l · conv) with one learnable scale per level.

Module names are the seed's (``cls_tower``, ``bbox_tower``, ``cls_logits``, ``bbox_pred``,
``centerness``, ``scales.{l}.scale``).
"""

import math

import torch
from torch import nn

GN_GROUPS = 32


class Scale(nn.Module):
    """x · s with one learnable scalar s (initially `init`)."""

    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(GN_GROUPS, channels), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Args:
    in_channels: channels of every pyramid level (256).
    num_classes: foreground classes (one sigmoid each, no background class).
    num_levels: pyramid levels, one regression scale each (5: P3-P7).
    num_convs: depth of each tower (4).
    prior_prob: initial class probability (bias -log((1 - p) / p)).
    centerness_on_reg: centerness from the regression tower (later FCOS) instead of the
        classification tower (the seed).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_levels: int = 5,
        num_convs: int = 4,
        prior_prob: float = 0.01,
        centerness_on_reg: bool = False,
    ):
        super().__init__()
        self.cls_tower = _tower(in_channels, num_convs)
        self.bbox_tower = _tower(in_channels, num_convs)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        self.centerness_on_reg = centerness_on_reg
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """features: one [B, in_channels, H_l, W_l] map per level. Returns per level the class
        logits [B, C, H_l, W_l], the distances (l, t, r, b) > 0 in input pixels [B, 4, H_l, W_l]
        and the centerness logits [B, 1, H_l, W_l]."""
        if len(features) != len(self.scales):
            raise ValueError(f"FCOSHead expects {len(self.scales)} levels, got {len(features)}")
        logits, distances, centerness = [], [], []
        for feature, scale in zip(features, self.scales, strict=True):
            cls_feature = self.cls_tower(feature)
            box_feature = self.bbox_tower(feature)
            logits.append(self.cls_logits(cls_feature))
            distances.append(torch.exp(scale(self.bbox_pred(box_feature))))
            centerness.append(self.centerness(box_feature if self.centerness_on_reg else cls_feature))
        return logits, distances, centerness
