"""Faster R-CNN (Ren et al. 2015) with a C4 body (faster-rcnn.pytorch) or a feature pyramid
(FPN, DetNet_Pytorch): body → RPN → proposal-target layer → RoI pooling → box head."""

from .bodies import BODIES, PYRAMID_BODIES
from .model import FasterRCNN, faster_rcnn_from_parts
from .recipe import C4, FPN, VGG16_C4
from .roi_pooling import POOLING_MODES


def build_faster_rcnn(
    body: str,
    num_classes: int,
    *,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    pooling_mode: str = "align",
    class_agnostic: bool = False,
    soft_nms: bool = False,
) -> FasterRCNN:
    """Faster R-CNN over the body `body` of ``BODIES`` (the seeds' names: vgg16, res50, res101,
    detnet59, res50_fpn), with the seeds' anchors and RPN settings for a C4 or a pyramid body.

    pooling_mode: "align", "pool" or "crop" (``roi_pooling``); class_agnostic: one box
    regression for all classes (the seeds' --cag); soft_nms: DetNet's Soft-NMS at test.
    """
    trunk, box_head = BODIES[body](frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained)
    return faster_rcnn_from_parts(
        trunk,
        box_head,
        num_classes,
        pyramid=body in PYRAMID_BODIES,
        pooling_mode=pooling_mode,
        class_agnostic=class_agnostic,
        soft_nms=soft_nms,
    )


__all__ = ["BODIES", "C4", "FPN", "POOLING_MODES", "VGG16_C4", "FasterRCNN", "build_faster_rcnn"]
