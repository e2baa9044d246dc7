"""The net table: the one place that maps a ``--net`` name to its builder and its recipe.

A builder is called as ``build(num_classes, pretrained=..., frozen_stages=..., frozen_bn=...,
**options)`` (options: the recipe's ``Option``s) and returns a ``Detector``. The seeds' names
stay as they were (faster-rcnn.pytorch's bare backbone names for Faster R-CNN); every new
family's names start with the family (``centernet_r18``, ``ssd_vgg16``, ``fcos_r50``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .centernet import CENTERNET, build_centernet
from .faster_rcnn import C4, FPN, VGG16_C4, build_faster_rcnn
from .fcos import FCOS_RESNET, FCOS_VOVNET, build_fcos
from .recipe import Recipe
from .ssd import HEADS as SSD_HEADS
from .ssd import SSD_RECIPE, build_ssd
from .ttfnet import TTFNET, build_ttfnet


@dataclass(frozen=True)
class NetSpec:
    build: Callable
    recipe: Recipe


NETS: dict[str, NetSpec] = {
    # TTFNet: the paper has one box conv for ResNet-18 and two for the deeper backbones.
    "ttfnet_r18": NetSpec(partial(build_ttfnet, "resnet18", wh_convs=1), TTFNET),
    "ttfnet_r34": NetSpec(partial(build_ttfnet, "resnet34", wh_convs=2), TTFNET),
    "ttfnet_r50": NetSpec(partial(build_ttfnet, "resnet50", wh_convs=2), TTFNET),
    "ttfnet_d53": NetSpec(partial(build_ttfnet, "darknet53", wh_convs=2), TTFNET),
    # CenterNet as CenterX: plain 3×3 convs in the up-sampling neck (CenterX's USE_DEFORM False)
    # or modulated deformable ones (its default, the resdcn nets).
    "centernet_r18": NetSpec(partial(build_centernet, "resnet18"), CENTERNET),
    "centernet_r50": NetSpec(partial(build_centernet, "resnet50"), CENTERNET),
    "centernet_resdcn18": NetSpec(partial(build_centernet, "resnet18", deform=True), CENTERNET),
    "centernet_resdcn50": NetSpec(partial(build_centernet, "resnet50", deform=True), CENTERNET),
    # Faster R-CNN, C4 (faster-rcnn.pytorch; checkpoints faster_rcnn_*) and FPN (DetNet; fpn_*).
    "vgg16": NetSpec(partial(build_faster_rcnn, "vgg16"), VGG16_C4),
    "res50": NetSpec(partial(build_faster_rcnn, "res50"), C4),
    "res101": NetSpec(partial(build_faster_rcnn, "res101"), C4),
    "detnet59": NetSpec(partial(build_faster_rcnn, "detnet59"), FPN),
    "res50_fpn": NetSpec(partial(build_faster_rcnn, "res50_fpn"), FPN),
    # FCOS: VoVNet-FCOS's VoVNet nets and FCOS's ResNet-FPN baselines.
    "fcos_vovnet39": NetSpec(partial(build_fcos, "vovnet39"), FCOS_VOVNET),
    "fcos_vovnet57": NetSpec(partial(build_fcos, "vovnet57"), FCOS_VOVNET),
    "fcos_vovnet93": NetSpec(partial(build_fcos, "vovnet93"), FCOS_VOVNET),
    "fcos_r50": NetSpec(partial(build_fcos, "resnet50"), FCOS_RESNET),
    "fcos_r101": NetSpec(partial(build_fcos, "resnet101"), FCOS_RESNET),
    # SSD family (ssds.pytorch v0.3.1): every (head, backbone) of the heads' CONFIGS, seed names.
    **{
        f"{head}_{backbone}": NetSpec(partial(build_ssd, head, backbone), SSD_RECIPE)
        for head, (_, configs) in SSD_HEADS.items()
        for backbone in configs
    },
}
DEFAULT_NET = "ttfnet_r18"
