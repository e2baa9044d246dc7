"""TTFNet (Liu et al., AAAI 2020): a backbone, TTFNet's up-sampling head, Gaussian targets."""

from ..backbones import build_backbone
from .head import TTFHead
from .model import TTFNet
from .recipe import TTFNET


def build_ttfnet(
    backbone: str,
    num_classes: int,
    *,
    wh_convs: int,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    dcn: bool = False,
) -> TTFNet:
    """TTFNet over the shared backbone `backbone` (its four maps at strides 4..32).

    wh_convs: convs of the box branch (the paper: one for ResNet-18, two for deeper backbones).
    dcn: modulated deformable convs in the up-sampling stages, as the paper.
    """
    trunk = build_backbone(backbone, frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained)
    return TTFNet(trunk, TTFHead(trunk.out_channels, num_classes, wh_convs=wh_convs, dcn=dcn), num_classes)


__all__ = ["TTFNET", "TTFHead", "TTFNet", "build_ttfnet"]
