"""Box heads of the two-stage detectors ("head to tail"): pooled RoI features [K, C, P, P] ->
one feature vector per RoI [K, D], which the detector's classifier and box regressor read.

Each head declares ``pool_size`` (P, what the RoI pooling must produce), ``in_channels`` (C)
and ``out_features`` (D).
"""

import torch
from torch import nn

VGG16_POOL_SIZE = 7
VGG16_FC_FEATURES = 4096
VGG16_DROPOUT = 0.5  # torchvision's, kept by faster-rcnn.pytorch's fc6/fc7
VGG16_FC_INIT_STD = 0.01  # torchvision's VGG init for Linear layers
C4_POOL_SIZE = 7
TWO_FC_INIT_STD = 0.02  # DetNet_pytorch / FPN_Pytorch initialise their RCNN_top with N(0, 0.02)


def check_pooled(pooled: torch.Tensor, channels: int, pool_size: int) -> None:
    if pooled.dim() != 4 or pooled.shape[1:] != (channels, pool_size, pool_size):
        raise ValueError(
            f"pooled must be [K, {channels}, {pool_size}, {pool_size}] RoI features, got {list(pooled.shape)}"
        )


class VGG16BoxHead(nn.Module):
    """VGG16's fc6 and fc7 (each Linear + ReLU + Dropout): [K, 512, 7, 7] -> [K, 4096].

    Held in ``classifier`` at torchvision's indices (``classifier.0`` fc6, ``classifier.3`` fc7),
    so the fc layers of a torchvision ImageNet checkpoint load into it.
    """

    pool_size = VGG16_POOL_SIZE
    out_features = VGG16_FC_FEATURES

    def __init__(self, in_channels: int = 512):
        super().__init__()
        self.in_channels = in_channels
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * self.pool_size**2, self.out_features),
            nn.ReLU(inplace=True),
            nn.Dropout(VGG16_DROPOUT),
            nn.Linear(self.out_features, self.out_features),
            nn.ReLU(inplace=True),
            nn.Dropout(VGG16_DROPOUT),
        )
        for m in self.classifier:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=VGG16_FC_INIT_STD)
                nn.init.zeros_(m.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        check_pooled(pooled, self.in_channels, self.pool_size)
        return self.classifier(pooled.flatten(1))


class ResNetC4BoxHead(nn.Module):
    """The C4 head: ResNet's ``layer4`` (first block stride 2), then the spatial mean.
    [K, 1024, 7, 7] -> [K, 2048, 4, 4] -> [K, 2048]."""

    pool_size = C4_POOL_SIZE

    def __init__(self, layer4: nn.Sequential, in_channels: int, out_features: int):
        super().__init__()
        self.layer4 = layer4
        self.in_channels = in_channels
        self.out_features = out_features

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        check_pooled(pooled, self.in_channels, self.pool_size)
        return self.layer4(pooled).mean(dim=(2, 3))


class TwoFCBoxHead(nn.Module):
    """Two fully connected layers with ReLUs: [K, C, P, P] -> [K, C*P*P] -> [K, D] -> [K, D].

    The FPN heads. DetNet's is written as Conv(C->D, kernel P, stride P) + ReLU + Conv1x1(D->D)
    + ReLU + spatial mean, which on a P x P input is exactly these two layers.
    """

    def __init__(self, in_channels: int, pool_size: int, out_features: int):
        super().__init__()
        self.in_channels = in_channels
        self.pool_size = pool_size
        self.out_features = out_features
        self.fc6 = nn.Linear(in_channels * pool_size**2, out_features)
        self.fc7 = nn.Linear(out_features, out_features)
        self.relu = nn.ReLU(inplace=True)
        for fc in (self.fc6, self.fc7):
            nn.init.normal_(fc.weight, std=TWO_FC_INIT_STD)
            nn.init.zeros_(fc.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        check_pooled(pooled, self.in_channels, self.pool_size)
        return self.relu(self.fc7(self.relu(self.fc6(pooled.flatten(1)))))
