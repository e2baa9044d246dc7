"""Detectors by name (the ``--net`` flag): ``build_detector(net, num_classes, ...)``."""

from torch import nn

from .backbones import DarkNet53, ResNet
from .layers import load_checkpoint_weights
from .ttf_head import TTFHead
from .ttfnet import TTFNet

# net name → (backbone factory, TTFHead keyword arguments). The paper uses one box conv for
# ResNet-18 and two for the deeper backbones.
TTFNET_NETS = {
    "ttfnet_r18": (lambda **kw: ResNet(18, **kw), {"wh_convs": 1}),
    "ttfnet_r34": (lambda **kw: ResNet(34, **kw), {"wh_convs": 2}),
    "ttfnet_r50": (lambda **kw: ResNet(50, **kw), {"wh_convs": 2}),
    "ttfnet_d53": (lambda **kw: DarkNet53(**kw), {"wh_convs": 2}),
}
NETS = sorted(TTFNET_NETS)


def build_detector(
    net: str, num_classes: int, pretrained: str | None = None, frozen_stages: int = -1, frozen_bn: bool = False
) -> nn.Module:
    """Build the detector `net` for `num_classes` foreground classes.

    Args:
        pretrained: path to the user's ImageNet checkpoint for the backbone (torchvision-style
            keys for ResNets); None trains from scratch.
        frozen_stages: -1 trains all; 0 freezes the stem; k also the first k stages.
        frozen_bn: freeze every backbone BatchNorm.
    """
    if net not in TTFNET_NETS:
        raise ValueError(f"unknown --net {net!r}; choose one of {', '.join(NETS)}")
    make_backbone, head_kwargs = TTFNET_NETS[net]
    backbone = make_backbone(frozen_stages=frozen_stages, frozen_bn=frozen_bn)
    if pretrained:
        load_checkpoint_weights(backbone, pretrained, drop_prefixes=("fc.",))
    head = TTFHead(backbone.out_channels, num_classes, **head_kwargs)
    return TTFNet(backbone, head, num_classes)
