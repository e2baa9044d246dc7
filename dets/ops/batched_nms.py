"""Batched NMS: NMS run independently within each category.

Same results as ``torchvision.ops.batched_nms`` (conventions in ``dets.ops.nms``), computed
without offsetting coordinates by category (which loses precision in float16) and without a
host loop over categories: every kernel orders the boxes by (category, decreasing score) and
only compares boxes inside one category's range.
"""

import torch

from . import _backend
from ._checks import check_same_device, check_tensor, fx_leaf
from .nms import _check_nms_args, _for_cpu_kernel
from .reference import batched_nms as _reference

_backend.register_op("batched_nms")


@torch.library.custom_op("dets::batched_nms_triton", mutates_args=())
def _batched_nms_triton(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    return _backend.triton_kernels("batched_nms", boxes.device).batched_nms(boxes, scores, idxs, iou_threshold)


def _batched_nms_fake(boxes, scores, idxs, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)


_batched_nms_triton.register_fake(_batched_nms_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::batched_nms")(_batched_nms_fake)


@fx_leaf
def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category of `idxs`; same results as ``torchvision.ops.batched_nms``.

    Args:
        boxes: float [N, 4], (x1, y1, x2, y2). An empty tensor of any shape (e.g. [0], which
            torchvision also takes) returns an empty result before the other arguments are
            looked at, as in torchvision.
        scores: float [N], same dtype and device as boxes.
        idxs: integer [N] category of each box (any integer values; int64 internally).
        iou_threshold: a box is discarded when its IoU with a kept box of the same category
            is > iou_threshold.

    Returns:
        int64 [K]: indices of the kept boxes of all categories, by decreasing score
        (ties: lower index first).
    """
    if isinstance(boxes, torch.Tensor) and boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes, scores, iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    check_tensor("idxs", idxs, dims=1)
    check_same_device(boxes=boxes, idxs=idxs)
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise TypeError(f"idxs must be an integer tensor, got {idxs.dtype}")
    if idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"idxs must have one entry per box: boxes {tuple(boxes.shape)}, idxs {tuple(idxs.shape)}")
    idxs = idxs.to(torch.int64)
    backend = _backend.choose("batched_nms", boxes.device)
    if backend == "torch":
        return _reference.batched_nms(boxes, scores, idxs, iou_threshold)
    if backend == "triton":
        return _batched_nms_triton(boxes, scores, idxs, iou_threshold)
    if backend == "cpu":
        boxes, scores = _for_cpu_kernel(boxes, scores)
    return torch.ops.dets.batched_nms(boxes, scores, idxs, iou_threshold)
