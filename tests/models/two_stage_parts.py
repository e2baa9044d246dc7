"""Tiny bodies and box heads with the two-stage contract (see dets.models.faster_rcnn), for
model tests that must not depend on the real backbones' size."""

import torch.nn.functional as F
from torch import nn


class TinyBody(nn.Module):
    """A stack of stride-2 convs; returns the maps at `strides` (powers of two, a repeated
    stride repeats the map through a 3x3 conv, as DetNet's stride-16 levels)."""

    def __init__(self, strides=(16,), channels: int = 8, roi_levels=None):
        super().__init__()
        self.strides = tuple(strides)
        self.out_channels = channels
        self.rpn_levels = tuple(range(len(strides)))
        self.roi_levels = tuple(roi_levels) if roi_levels is not None else self.rpn_levels
        steps = max(strides).bit_length() - 1
        self.down = nn.ModuleList(nn.Conv2d(3 if i == 0 else channels, channels, 3, 2, 1) for i in range(steps))
        self.same = nn.ModuleList(nn.Conv2d(channels, channels, 3, 1, 1) for _ in strides)

    def forward(self, images):
        maps, x, stride = [], images, 1
        for i, wanted in enumerate(self.strides):
            while stride < wanted:
                x = F.relu(self.down[stride.bit_length() - 1](x))
                stride *= 2
            x = F.relu(self.same[i](x))
            maps.append(x)
        return maps


class TinyHead(nn.Module):
    def __init__(self, channels: int = 8, pool_size: int = 4, out_features: int = 16):
        super().__init__()
        self.pool_size = pool_size
        self.out_features = out_features
        self.fc = nn.Linear(channels * pool_size * pool_size, out_features)

    def forward(self, pooled):
        return F.relu(self.fc(pooled.flatten(1)))
