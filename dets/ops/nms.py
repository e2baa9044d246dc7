"""Non-maximum suppression.

Conventions (shared by every backend):
    boxes   float [N, 4] as (x1, y1, x2, y2) in absolute coordinates, no "+1" on widths.
    A box is suppressed when its IoU with a kept box is strictly greater than the threshold.
    Visit order is by decreasing score; equal scores are visited in increasing index order
    (a stable sort), so every backend returns the same indices on ties.
    NaN scores sort before every number (torch.sort's order); boxes with a NaN coordinate
    have NaN IoU with everything, which is never > the threshold: they are never suppressed
    and suppress nothing.
"""

import torch

from . import _backend
from ._checks import check_float_arg, check_floating, check_same_device, check_tensor
from .reference import nms as _reference

_backend.register_op("nms")


def _check_nms_args(boxes, scores, iou_threshold) -> float:
    check_tensor("boxes", boxes, dims=2, last=4)
    check_tensor("scores", scores, dims=1)
    check_floating("boxes", boxes)
    check_floating("scores", scores)
    check_same_device(boxes=boxes, scores=scores)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have one entry per box: boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)}"
        )
    return check_float_arg("iou_threshold", iou_threshold)


@torch.library.custom_op("dets::nms_triton", mutates_args=())
def _nms_triton(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return _backend.triton_kernels("nms", boxes.device).nms(boxes, scores, iou_threshold)


def _nms_fake(boxes, scores, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)


_nms_triton.register_fake(_nms_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::nms")(_nms_fake)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; same results as ``torchvision.ops.nms``.

    Args:
        boxes: float [N, 4], (x1, y1, x2, y2).
        scores: float [N].
        iou_threshold: boxes with IoU > iou_threshold against a kept box are discarded.

    Returns:
        int64 [K]: indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    backend = _backend.choose("nms", boxes.device)
    if backend == "torch":
        return _reference.nms(boxes, scores, iou_threshold)
    if backend == "triton":
        return _nms_triton(boxes, scores, iou_threshold)
    return torch.ops.dets.nms(boxes, scores, iou_threshold)
