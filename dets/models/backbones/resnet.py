"""ResNet-18/34/50/101 (He et al. 2016), torchvision's layout ("v1.5": stride in the 3×3
conv of bottlenecks) and state-dict keys, so a user's ImageNet checkpoint loads as is."""

from torch import nn

from ..layers import freeze, freeze_batch_norm
from .base import check_frozen_stages, check_out_indices

DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, dilation: int = 1
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def shortcut(self, x):
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x):
        identity = self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_stage(block, in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(in_channels, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_resnet_weights(module: nn.Module) -> None:
    """He-normal convs, unit BNs, and a zero last BN in every residual branch of `module`."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # Zero-init the last BN of each residual branch: each block starts as the identity,
    # which helps training from scratch.
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
        elif isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    """ResNet trunk returning the outputs of layer1..layer4 (strides 4, 8, 16, 32).

    Args:
        depth: 18, 34, 50 or 101.
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 also layer1..layerk.
        frozen_bn: replace every BatchNorm by FrozenBatchNorm2d (fixed statistics).
        out_indices: which of the four maps to return (default all); stages after the last one
            are not built (the C4 detectors take (2,): layer4 becomes their RoI head).
    """

    def __init__(self, depth: int, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        kind, counts = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        out_indices = check_out_indices(f"ResNet-{depth}", out_indices, len(counts))
        num_stages = out_indices[-1] + 1
        channels = 64
        self.out_channels = []
        for i in range(num_stages):
            planes = 64 * 2**i
            setattr(self, f"layer{i + 1}", make_stage(block, channels, planes, counts[i], 1 if i == 0 else 2))
            channels = planes * block.expansion
            self.out_channels.append(channels)
        self.out_strides = [4 * 2**i for i in range(num_stages)]
        self.num_stages = num_stages
        self.select_maps(out_indices)
        init_resnet_weights(self)
        self.freeze_stages(frozen_stages, frozen_bn)

    def select_maps(self, out_indices: tuple[int, ...]) -> None:
        """Return only the maps of stages `out_indices` (0-based), with their channels and strides."""
        self.out_indices = out_indices
        self.out_channels = [self.out_channels[i] for i in out_indices]
        self.out_strides = [self.out_strides[i] for i in out_indices]

    def freeze_stages(self, frozen_stages: int, frozen_bn: bool) -> None:
        """Freeze the stem (frozen_stages >= 0) and layer1..layer{frozen_stages}; all BNs if frozen_bn."""
        check_frozen_stages(type(self).__name__, frozen_stages, self.num_stages)
        if frozen_stages >= 0:
            freeze(self.conv1)
            self.bn1 = freeze(self.bn1)
        for i in range(1, frozen_stages + 1):
            freeze(getattr(self, f"layer{i}"))
        if frozen_bn:
            freeze_batch_norm(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            features.append(x)
        return [features[i] for i in self.out_indices]
