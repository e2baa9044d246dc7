"""Backbones shared by every family, and their one contract.

A backbone maps images [B, 3, H, W] to a list of feature maps, finest first, and declares for
them ``out_channels`` and ``out_strides`` (lists, one entry per returned map). Every backbone
takes the same keywords:

    out_indices    which of its maps to return (default all); later stages are not built
    frozen_stages  -1 trains everything; 0 freezes the stem; k >= 1 also the first k stages;
                   outside [-1, number of stages] is a ValueError, the same for every backbone
    frozen_bn      every BatchNorm becomes a FrozenBatchNorm2d

``build_backbone(name, ...)`` builds one from ``BACKBONES`` and loads a user's ImageNet
checkpoint with ``load_pretrained`` (one loader and one report of missing and unexpected keys
for every family).

| name | maps (default out_indices) | channels | strides |
|---|---|---|---|
| resnet18, resnet34 | layer1..layer4 | 64, 128, 256, 512 | 4, 8, 16, 32 |
| resnet50, resnet101 | layer1..layer4 | 256, 512, 1024, 2048 | 4, 8, 16, 32 |
| darknet19, darknet53 | stages 2..5 | 128, 256, 512, 1024 | 4, 8, 16, 32 |
| vgg16 | conv5_3 | 512 | 16 |
| vgg16_ssd | conv4_3, conv7 (ssd.pytorch's base) | 512, 1024 | 8, 16 |
| detnet59 | layer1..layer5 | 256, 512, 1024, 1024, 1024 | 4, 8, 16, 16, 16 |
| vovnet39, vovnet57, vovnet93 | stage2..stage5 | 256, 512, 768, 1024 | 4, 8, 16, 32 |
| mobilenet_v1{,_075,_050,_025} | units 3, 5, 11, 13 | 128, 256, 512, 1024 (x width) | 4, 8, 16, 32 |
| mobilenet_v2{,_075,_050,_025} | units 3, 6, 13, 17 | 24, 32, 96, 320 (x width) | 4, 8, 16, 32 |
"""

from functools import partial

from torch import nn

from .base import check_frozen_stages, check_out_indices, load_pretrained
from .darknet import DarkNet19, DarkNet53
from .detnet import DetNet59
from .mobilenet import MobileNetV1, MobileNetV2
from .resnet import ResNet
from .vgg import VGG16
from .vovnet import VoVNet

# The seed's width multipliers and their name suffixes.
WIDTHS = {"": 1.0, "_075": 0.75, "_050": 0.5, "_025": 0.25}
WIDTH_SUFFIXES = tuple(WIDTHS)

# The ImageNet classifier of each backbone's usual checkpoint: not part of a detector.
CLASSIFIER_KEYS = {
    "vgg16": ("classifier.",),
    "vgg16_ssd": ("classifier.",),
    "darknet53": ("fc.",),
    **{f"vovnet{depth}": ("classifier.",) for depth in (39, 57, 93)},
    # torchvision's mobilenet_v2: the 1280-wide last conv (features.18) belongs to the classifier.
    **{f"mobilenet_v2{suffix}": ("classifier.", "features.18.") for suffix in WIDTH_SUFFIXES},
}
DEFAULT_CLASSIFIER_KEYS = ("fc.",)

BACKBONES = {
    "resnet18": partial(ResNet, 18),
    "resnet34": partial(ResNet, 34),
    "resnet50": partial(ResNet, 50),
    "resnet101": partial(ResNet, 101),
    "darknet53": DarkNet53,
    "darknet19": DarkNet19,
    "vgg16": VGG16,
    "vgg16_ssd": partial(VGG16, ssd=True),
    "detnet59": DetNet59,
    "vovnet39": partial(VoVNet, 39),
    "vovnet57": partial(VoVNet, 57),
    "vovnet93": partial(VoVNet, 93),
    **{f"mobilenet_v1{suffix}": partial(MobileNetV1, m) for suffix, m in WIDTHS.items()},
    **{f"mobilenet_v2{suffix}": partial(MobileNetV2, m) for suffix, m in WIDTHS.items()},
}


def build_backbone(
    name: str,
    *,
    out_indices=None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    pretrained: str | None = None,
) -> nn.Module:
    """The backbone `name` of ``BACKBONES`` (see the module doc for the keywords); `pretrained`
    is the path of a user's ImageNet checkpoint (torchvision-style keys for ResNets and VGG16,
    the published key names for DetNet-59 and VoVNet), None to start from the initialisation."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    backbone = BACKBONES[name](frozen_stages=frozen_stages, frozen_bn=frozen_bn, out_indices=out_indices)
    load_pretrained(
        backbone,
        pretrained,
        CLASSIFIER_KEYS.get(name, DEFAULT_CLASSIFIER_KEYS),
        frozen=frozen_stages >= 0 or (frozen_bn and not name.startswith("vgg16")),
    )
    return backbone


__all__ = [
    "BACKBONES",
    "DarkNet19",
    "DarkNet53",
    "DetNet59",
    "MobileNetV1",
    "MobileNetV2",
    "ResNet",
    "VGG16",
    "VoVNet",
    "build_backbone",
    "check_frozen_stages",
    "check_out_indices",
    "load_pretrained",
]
