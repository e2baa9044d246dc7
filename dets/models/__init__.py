"""Detectors by name (the ``--net`` flag): ``build_detector(net, num_classes, ...)``.

Families: TTFNet (``ttfnet_*``) and Faster R-CNN with a C4 body (``vgg16``, ``res50``,
``res101``; checkpoints named ``faster_rcnn_*``) or a feature pyramid (``detnet59``,
``res50_fpn``; checkpoints named ``fpn_*``), as faster-rcnn.pytorch and DetNet name them.
"""

from torch import nn

from .backbones import DarkNet53, ResNet
from .faster_rcnn import FasterRCNN, faster_rcnn_from_parts
from .layers import load_checkpoint_weights
from .roi_pooling import POOLING_MODES
from .ttf_head import TTFHead
from .ttfnet import TTFNet
from .two_stage_backbones import TWO_STAGE_BACKBONES

# net name → (backbone factory, TTFHead keyword arguments). The paper uses one box conv for
# ResNet-18 and two for the deeper backbones.
TTFNET_NETS = {
    "ttfnet_r18": (lambda **kw: ResNet(18, **kw), {"wh_convs": 1}),
    "ttfnet_r34": (lambda **kw: ResNet(34, **kw), {"wh_convs": 2}),
    "ttfnet_r50": (lambda **kw: ResNet(50, **kw), {"wh_convs": 2}),
    "ttfnet_d53": (lambda **kw: DarkNet53(**kw), {"wh_convs": 2}),
}
C4_NETS = ("vgg16", "res50", "res101")
FPN_NETS = ("detnet59", "res50_fpn")
TWO_STAGE_NETS = C4_NETS + FPN_NETS
NETS = sorted(TTFNET_NETS) + list(TWO_STAGE_NETS)
DEFAULT_POOLING_MODE = "align"


def is_two_stage(net: str) -> bool:
    return net in TWO_STAGE_NETS


def checkpoint_prefix(net: str) -> str:
    """File-name prefix of `net`'s checkpoints: the seeds' faster_rcnn / fpn, else the net's name."""
    if net in C4_NETS:
        return "faster_rcnn"
    if net in FPN_NETS:
        return "fpn"
    return net


def build_detector(
    net: str,
    num_classes: int,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    pooling_mode: str | None = None,
    class_agnostic: bool = False,
    soft_nms: bool = False,
) -> nn.Module:
    """Build the detector `net` for `num_classes` foreground classes.

    Args:
        pretrained: path to the user's ImageNet checkpoint for the backbone (torchvision-style
            keys for VGG16 and ResNets, detnet59.pth's for DetNet-59); None trains from scratch.
        frozen_stages: -1 trains all; 0 freezes the stem; k also the first k stages.
        frozen_bn: freeze every backbone BatchNorm.
        pooling_mode, class_agnostic, soft_nms: Faster R-CNN only (None means "align"); TTFNet
            nets reject them.
    """
    if net in TTFNET_NETS:
        two_stage_options = {"pooling_mode": pooling_mode, "class_agnostic": class_agnostic, "soft_nms": soft_nms}
        given = [name for name, value in two_stage_options.items() if value not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} apply to the Faster R-CNN nets only, not to {net}")
        make_backbone, head_kwargs = TTFNET_NETS[net]
        backbone = make_backbone(frozen_stages=frozen_stages, frozen_bn=frozen_bn)
        if pretrained:
            load_checkpoint_weights(backbone, pretrained, drop_prefixes=("fc.",))
        head = TTFHead(backbone.out_channels, num_classes, **head_kwargs)
        return TTFNet(backbone, head, num_classes)
    if net in TWO_STAGE_NETS:
        body, box_head = TWO_STAGE_BACKBONES[net](
            frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained
        )
        return faster_rcnn_from_parts(
            body,
            box_head,
            num_classes,
            pyramid=net in FPN_NETS,
            pooling_mode=pooling_mode or DEFAULT_POOLING_MODE,
            class_agnostic=class_agnostic,
            soft_nms=soft_nms,
        )
    raise ValueError(f"unknown --net {net!r}; choose one of {', '.join(NETS)}")


__all__ = [
    "C4_NETS",
    "FPN_NETS",
    "NETS",
    "POOLING_MODES",
    "TWO_STAGE_NETS",
    "FasterRCNN",
    "TTFNet",
    "build_detector",
    "checkpoint_prefix",
    "is_two_stage",
]
