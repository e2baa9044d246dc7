"""CenterNet (Zhou et al. 2019) as CenterX builds it: a backbone's stride-32 map, CenterX's
up-sampling neck, three head branches, its losses and its knowledge distillation."""

from ..backbones import build_backbone
from .distill import CenterNetDistiller, load_teacher
from .head import CenterNetHead
from .model import CenterNet
from .neck import CenterNetNeck, deform_conv3x3, plain_conv3x3
from .recipe import CENTERNET


def build_centernet(
    backbone: str,
    num_classes: int,
    *,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    deform: bool = False,
    min_overlap: float = 0.7,
    hm_loss: str = "focal",
    norm_wh: bool = False,
    communism=None,
    teachers=None,
    kd_cls_index=None,
    kd_without_gt: bool = False,
) -> CenterNet | CenterNetDistiller:
    """CenterNet over the last map (stride 32) of the shared backbone `backbone`.

    deform: modulated deformable 3×3 convs in the up-sampling neck (CenterX's ``resdcn`` nets).

    min_overlap, hm_loss, norm_wh, communism: see ``CenterNet``.
    teachers: paths of CenterNet checkpoints to distil from (None: no distillation); the result
        is then a ``CenterNetDistiller`` whose class slices are `kd_cls_index` (one tuple of
        student classes per teacher; None: consecutive blocks) and which learns from the
        teachers alone with `kd_without_gt`.
    """
    if not teachers and (kd_cls_index is not None or kd_without_gt):
        raise ValueError("--kd_cls_index and --kd_without_gt need --teachers")
    trunk = build_backbone(
        backbone, out_indices=(3,), frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained
    )
    neck = CenterNetNeck(trunk.out_channels[-1], conv_layer=deform_conv3x3 if deform else plain_conv3x3)
    model = CenterNet(
        trunk,
        neck,
        CenterNetHead(neck.out_channels, num_classes),
        num_classes,
        min_overlap=min_overlap,
        hm_loss=hm_loss,
        norm_wh=norm_wh,
        communism=communism,
    )
    if not teachers:
        return model
    return CenterNetDistiller(
        model, [load_teacher(p) for p in teachers], kd_cls_index, without_gt=kd_without_gt, norm_wh=norm_wh
    )


__all__ = [
    "CENTERNET",
    "CenterNet",
    "CenterNetDistiller",
    "CenterNetHead",
    "CenterNetNeck",
    "build_centernet",
    "load_teacher",
]
