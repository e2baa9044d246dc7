"""Detection ops: one function (and module, where it has state) per op.

Each op validates its arguments here, then runs on the backend chosen by
``dets.ops._backend.choose`` (see that module for the rules and ``DETS_BACKEND``).
"""

from ._backend import backend
from .batched_nms import batched_nms
from .centernet_decode import centernet_decode
from .centernet_targets import centernet_targets
from .deform_conv2d import DeformConv2d, ModulatedDeformConv2dPack, deform_conv2d
from .fcos_targets import fcos_targets
from .nms import nms
from .roi_align import RoIAlign, roi_align
from .roi_crop import RoICrop, roi_crop
from .roi_pool import RoIPool, roi_pool
from .sigmoid_focal_loss import sigmoid_focal_loss
from .soft_nms import soft_nms
from .ttf_decode import ttf_decode
from .ttf_targets import ttf_targets

__all__ = [
    "backend",
    "batched_nms",
    "centernet_decode",
    "centernet_targets",
    "deform_conv2d",
    "DeformConv2d",
    "ModulatedDeformConv2dPack",
    "fcos_targets",
    "nms",
    "roi_align",
    "roi_crop",
    "roi_pool",
    "RoIAlign",
    "RoICrop",
    "RoIPool",
    "sigmoid_focal_loss",
    "soft_nms",
    "ttf_decode",
    "ttf_targets",
]
