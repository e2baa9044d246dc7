"""FCOS (Tian et al., ICCV 2019) as VoVNet-FCOS: a backbone's C3-C5, an FPN to P3-P7, the
shared FCOS head, per-location targets from ``dets.ops.fcos_targets``."""

from ..backbones import build_backbone
from ..necks import FPN
from .head import FCOSHead
from .model import FCOS
from .recipe import FCOS_RESNET, FCOS_VOVNET

# C3, C4, C5 of the shared backbones (their stride-8, 16 and 32 maps).
C3_TO_C5 = (1, 2, 3)


def build_fcos(
    backbone: str,
    num_classes: int,
    *,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    center_sampling_radius: float = 0.0,
    iou_loss: str = "iou",
    centerness_on_reg: bool = False,
) -> FCOS:
    """FCOS over the shared backbone `backbone` (its stride 8, 16, 32 maps).

    center_sampling_radius: 0 (the seed) or r: positives only within r·stride of a box centre.
    iou_loss: "iou" (the seed) or "giou".
    centerness_on_reg: centerness from the regression tower instead of the classification one.
    """
    trunk = build_backbone(
        backbone, out_indices=C3_TO_C5, frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained
    )
    neck = FPN(trunk.out_channels, top="p6p7")
    head = FCOSHead(neck.out_channels, num_classes, centerness_on_reg=centerness_on_reg)
    return FCOS(trunk, neck, head, num_classes, center_sampling_radius=center_sampling_radius, iou_loss=iou_loss)


__all__ = ["FCOS", "FCOSHead", "FCOS_RESNET", "FCOS_VOVNET", "build_fcos"]
