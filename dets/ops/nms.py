"""Non-maximum suppression: ``nms`` here, ``batched_nms`` and ``soft_nms`` beside it.

Conventions (shared by every backend and by the whole NMS family):
    boxes   float [N, 4] as (x1, y1, x2, y2) in absolute coordinates, no "+1" on widths.
    IoU     inter / (area_a + area_b - inter), areas (x2 - x1) * (y2 - y1), computed in the
            boxes' dtype, in float32 for float16/bfloat16 boxes (torchvision's arithmetic,
            so float32/float64 results match ``torchvision.ops.nms`` exactly). The Triton
            kernels compute float64 boxes in float32.
    A box is suppressed when its IoU with a kept box is strictly greater than the threshold
    (the float IoU compared with the threshold as a double).
    Visit order is by decreasing score; equal scores are visited in increasing index order
    (a stable sort), so every backend returns the same indices on ties.
    Non-finite values: NaN scores sort before every number (torch.sort's order). A box with
    a NaN coordinate has NaN area, hence NaN IoU with everything, which is never > the
    threshold: it is never suppressed and suppresses nothing. Infinite coordinates follow
    IEEE arithmetic (e.g. a box spanning (-inf, +inf) has infinite area and IoU 0 or NaN
    with finite boxes).
    dtypes: boxes and scores share one floating dtype. The CPU kernels compute float16 and
    bfloat16 inputs in float32. Autocast: the wrappers cast (no autocast kernel is
    registered); inputs keep their dtype, except that boxes and scores of different dtypes
    are both cast to float32 under autocast (torchvision's behaviour).
"""

import torch

from . import _backend
from ._checks import check_float_arg, check_floating, check_same_device, check_same_dtype, check_tensor, fx_leaf
from .reference import nms as _reference

_backend.register_op("nms")


def _check_nms_args(boxes, scores, iou_threshold) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Validated (boxes, scores, iou_threshold). Under autocast, boxes and scores of
    different floating dtypes (say bfloat16 boxes and float32 scores) are both cast to
    float32, as torchvision's autocast kernel does; outside autocast that is an error."""
    check_tensor("boxes", boxes, dims=2, last=4)
    check_tensor("scores", scores, dims=1)
    check_floating("boxes", boxes)
    check_floating("scores", scores)
    check_same_device(boxes=boxes, scores=scores)
    if boxes.dtype != scores.dtype and torch.is_autocast_enabled(boxes.device.type):
        boxes, scores = boxes.float(), scores.float()
    check_same_dtype(boxes=boxes, scores=scores)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have one entry per box: boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)}"
        )
    return boxes, scores, check_float_arg("iou_threshold", iou_threshold)


def _for_cpu_kernel(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The C++ CPU kernels take float32/float64; half types are computed in float32."""
    if tensors[0].dtype in (torch.float16, torch.bfloat16):
        return tuple(t.float() for t in tensors)
    return tensors


@torch.library.custom_op("dets::nms_triton", mutates_args=())
def _nms_triton(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return _backend.triton_kernels("nms", boxes.device).nms(boxes, scores, iou_threshold)


def _nms_fake(boxes, scores, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64)


_nms_triton.register_fake(_nms_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::nms")(_nms_fake)


@fx_leaf
def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; same results as ``torchvision.ops.nms``.

    Args:
        boxes: float [N, 4], (x1, y1, x2, y2).
        scores: float [N], same dtype and device as boxes.
        iou_threshold: boxes with IoU > iou_threshold against a kept box are discarded.

    Returns:
        int64 [K]: indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    boxes, scores, iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    backend = _backend.choose("nms", boxes.device)
    if backend == "torch":
        return _reference.nms(boxes, scores, iou_threshold)
    if backend == "triton":
        return _nms_triton(boxes, scores, iou_threshold)
    if backend == "cpu":
        boxes, scores = _for_cpu_kernel(boxes, scores)
    return torch.ops.dets.nms(boxes, scores, iou_threshold)
