"""Feature extractors ("bodies") and box heads of the Faster R-CNN nets, by the seeds' names.

``BODIES[name](frozen_stages, frozen_bn, pretrained) -> (body, box_head)``:

- ``body(images [B, 3, H, W]) -> list[Tensor]``: feature maps, finest first, each
  ``[B, body.out_channels, ceil(H / s), ceil(W / s)]`` for its stride s in ``body.strides``
  (VGG16 floors instead: its max-pools do not pad).
- ``body.out_channels: int``, ``body.strides: tuple[int, ...]``.
- ``body.rpn_levels`` / ``body.roi_levels``: indices of the maps the RPN runs on and the RoI
  head pools from.
- ``box_head(pooled [K, C, P, P]) -> [K, box_head.out_features]`` with C = ``body.out_channels``
  and P = ``box_head.pool_size``; a wrong shape is a ValueError naming ``pooled``.

| name | body | out_channels | strides | rpn_levels | roi_levels | box head | P | D |
|---|---|---|---|---|---|---|---|---|
| vgg16 | conv1_1..conv5_3 | 512 | (16,) | (0,) | (0,) | fc6, fc7 (dropout) | 7 | 4096 |
| res50, res101 | stem + layer1..3 (C4) | 1024 | (16,) | (0,) | (0,) | layer4 + mean | 7 | 2048 |
| detnet59 | DetNet-59 + its FPN | 256 | (4, 8, 16, 16, 16) | 0..4 | (0, 1, 2, 3) | two fc | 14 | 1024 |
| res50_fpn | ResNet-50 + FPN | 256 | (4, 8, 16, 32, 64) | 0..4 | (0, 1, 2, 3) | two fc | 7 | 1024 |

Arguments:
- ``frozen_stages``: -1 trains everything; 0 freezes the stem; k >= 1 also the first k stages
  (ResNet layer1..layerk; VGG16 counts its conv1 block as the stem, so k freezes conv1..conv{k+1}).
  The seeds use 1 for every net (faster-rcnn.pytorch: VGG16 conv1-conv2, ResNet FIXED_BLOCKS=1;
  DetNet FIXED_BLOCKS=1). At most 4 (vgg16), 3 (res50/res101: layer4 is the head), 5 (detnet59),
  4 (res50_fpn); out of range is a ValueError.
- ``frozen_bn``: every BatchNorm of body and head becomes a FrozenBatchNorm2d (the seeds' setting
  with ImageNet weights). VGG16 has none.
- ``pretrained``: path of a user's ImageNet checkpoint: torchvision keys for vgg16 (``features.*``,
  ``classifier.0/3``) and the ResNets (``conv1``, ``bn1``, ``layer1``..``layer4``; the C4 head's
  ``layer4`` loads from the same file), the published ``detnet59.pth`` keys for detnet59. The
  ImageNet classifier is ignored; other keys the file lacks or the model lacks are reported in a
  warning. A missing or unreadable file is an error naming it. FPN layers and new fc layers are
  never in these files and start from their own initialisation.

Freezing without pretrained weights fixes random values (and frozen BNs keep the zero scale
that starts each residual branch), so that combination warns: train from scratch with
``frozen_stages=-1, frozen_bn=False``.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from ..backbones import BACKBONES, build_backbone, load_pretrained
from ..backbones.resnet import DEPTHS, Bottleneck, init_resnet_weights, make_stage
from ..layers import freeze_batch_norm
from ..necks import FPN, DetNetFPN
from .box_heads import ResNetC4BoxHead, TwoFCBoxHead, VGG16BoxHead

C4_STAGE = 2  # the body ends with layer3 (C4); layer4 is the box head
C4_HEAD_PLANES = 512
C4_HEAD_STRIDE = 2
DETNET_STRIDES = (4, 8, 16, 16, 16)
RES50_FPN_STRIDES = (4, 8, 16, 32, 64)
FPN_ROI_LEVELS = (0, 1, 2, 3)  # P2..P5; P6 only feeds the RPN
DETNET_POOL_SIZE = 14
FPN_POOL_SIZE = 7
FPN_FC_FEATURES = 1024
PYRAMID_BODIES = ("detnet59", "res50_fpn")
# ImageNet classifiers in the checkpoints (torchvision's and detnet59.pth), not part of a detector.
VGG16_CLASSIFIER = ("classifier.6.",)
RESNET_CLASSIFIER = ("fc.",)


class SingleMapBody(nn.Module):
    """The last map of a trunk as the only feature map: VGG16's conv5_3, or ResNet's C4 when the
    trunk stops after layer3. images [B, 3, H, W] -> [features [B, C, H/16, W/16]]."""

    rpn_levels = (0,)
    roi_levels = (0,)

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.out_channels = trunk.out_channels[-1]
        self.strides = (trunk.out_strides[-1],)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.trunk(images)[-1:]


class PyramidBody(nn.Module):
    """A trunk followed by a feature pyramid: images [B, 3, H, W] -> [P2, ..., P6]."""

    def __init__(self, trunk: nn.Module, neck: nn.Module, strides: tuple[int, ...], roi_levels: tuple[int, ...]):
        super().__init__()
        self.trunk = trunk
        self.neck = neck
        self.out_channels = neck.out_channels
        self.strides = strides
        self.rpn_levels = tuple(range(len(strides)))
        self.roi_levels = roi_levels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.trunk(images))


def vgg16(frozen_stages: int, frozen_bn: bool, pretrained: str | None) -> tuple[SingleMapBody, VGG16BoxHead]:
    """VGG16 conv1_1..conv5_3 body, fc6/fc7 box head. `frozen_bn` is accepted and ignored (no BN)."""
    # fc6/fc7 of the head load from the same file as the trunk: one load of both parts.
    trunk = BACKBONES["vgg16"](frozen_stages=frozen_stages)
    head = VGG16BoxHead(trunk.out_channels[-1])
    parts = {"features": trunk.features, "classifier": head.classifier}
    load_pretrained(parts, pretrained, VGG16_CLASSIFIER, frozen_stages >= 0)
    return SingleMapBody(trunk), head


def resnet_c4(
    depth: int, frozen_stages: int, frozen_bn: bool, pretrained: str | None
) -> tuple[SingleMapBody, ResNetC4BoxHead]:
    """ResNet stem + layer1..layer3 body, layer4 + mean box head (faster-rcnn.pytorch's C4)."""
    # layer4 of the head loads from the same file as the trunk: one load of both parts.
    trunk = BACKBONES[f"resnet{depth}"](out_indices=(C4_STAGE,), frozen_stages=frozen_stages, frozen_bn=frozen_bn)
    layer4 = make_stage(Bottleneck, trunk.out_channels[-1], C4_HEAD_PLANES, DEPTHS[depth][1][-1], C4_HEAD_STRIDE)
    init_resnet_weights(layer4)
    if frozen_bn:
        freeze_batch_norm(layer4)
    head = ResNetC4BoxHead(layer4, trunk.out_channels[-1], C4_HEAD_PLANES * Bottleneck.expansion)
    parts = {**dict(trunk.named_children()), "layer4": layer4}
    load_pretrained(parts, pretrained, RESNET_CLASSIFIER, frozen_stages >= 0 or frozen_bn)
    return SingleMapBody(trunk), head


def detnet59(frozen_stages: int, frozen_bn: bool, pretrained: str | None) -> tuple[PyramidBody, TwoFCBoxHead]:
    """DetNet-59 + its FPN (P2..P6, strides 4, 8, 16, 16, 16), two-fc head on 14x14 RoIs."""
    trunk = build_backbone("detnet59", frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained)
    body = PyramidBody(trunk, DetNetFPN(trunk.out_channels), DETNET_STRIDES, FPN_ROI_LEVELS)
    return body, TwoFCBoxHead(body.out_channels, DETNET_POOL_SIZE, FPN_FC_FEATURES)


def res50_fpn(frozen_stages: int, frozen_bn: bool, pretrained: str | None) -> tuple[PyramidBody, TwoFCBoxHead]:
    """ResNet-50 + FPN (P2..P6, strides 4, 8, 16, 32, 64), two-fc head on 7x7 RoIs."""
    trunk = build_backbone("resnet50", frozen_stages=frozen_stages, frozen_bn=frozen_bn, pretrained=pretrained)
    body = PyramidBody(trunk, FPN(trunk.out_channels), RES50_FPN_STRIDES, FPN_ROI_LEVELS)
    return body, TwoFCBoxHead(body.out_channels, FPN_POOL_SIZE, FPN_FC_FEATURES)


BODIES: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "vgg16": vgg16,
    "res50": partial(resnet_c4, 50),
    "res101": partial(resnet_c4, 101),
    "detnet59": detnet59,
    "res50_fpn": res50_fpn,
}
