"""Soft-NMS (Bodla et al., 2017), as DetNet uses it at test time.

Box and IoU conventions as in ``dets.ops.nms`` (no "+1" on widths, unlike DetNet's Cython).

Selection, exactly:
    1. Boxes whose score is < score_threshold are dropped at the start.
    2. While boxes remain: select the remaining box of highest *current* score (ties: the
       lowest input index; a NaN score counts as higher than every number, -0 equals +0),
       output its index and current score, and remove it. Every other remaining box r with
       IoU(selected, r) = u is then updated:
           linear:   score *= 1 - u   when u > iou_threshold
           gaussian: score *= exp(-(u * u) / sigma)
           hard:     r is dropped     when u > iou_threshold (plain NMS)
       A NaN u (a NaN coordinate, or two boxes of zero area) leaves r unchanged. Then r is
       dropped when its score is < score_threshold.
    DetNet's Cython differs in two documented ways: it keeps boxes whose *initial* score is
    below the threshold (only decayed boxes are tested), and its swap-with-last removal makes
    the order among equal scores depend on earlier removals; here ties always go to the
    lowest index.

Arithmetic: IoU, weights and scores in float32 (float64 for float64 inputs on the CPU and
reference backends); the returned scores are cast to the scores' dtype. Threshold comparisons
are exact (as in double). The Gaussian weight's exp comes from each backend's math library, so
its scores can differ in the last bits between backends.

Cost: O(N^2) time on every backend; on CUDA and Triton one thread block / program runs the
whole loop (two barriers per selected box), so it suits the per-image sizes Soft-NMS is used at
(up to a few thousand boxes), not tens of thousands.
"""

import math

import torch

from . import _backend
from ._checks import check_float_arg, fx_leaf
from .nms import _check_nms_args, _for_cpu_kernel
from .reference import soft_nms as _reference

_backend.register_op("soft_nms")

METHODS = _reference.METHODS


@torch.library.custom_op("dets::soft_nms_triton", mutates_args=())
def _soft_nms_triton(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    method: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    kernels = _backend.triton_kernels("soft_nms", boxes.device)
    return kernels.soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method)


def _soft_nms_fake(boxes, scores, iou_threshold, sigma, score_threshold, method):
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.int64), scores.new_empty((kept,))


_soft_nms_triton.register_fake(_soft_nms_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::soft_nms")(_soft_nms_fake)


@fx_leaf
def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "linear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS; see the module docstring for the exact selection rule.

    Args:
        boxes: float [N, 4], (x1, y1, x2, y2).
        scores: float [N], same dtype and device as boxes.
        iou_threshold: overlap above which "linear" decays and "hard" removes (Nt).
        sigma: width of the "gaussian" decay, > 0.
        score_threshold: boxes whose (decayed) score falls below it are dropped.
        method: "linear", "gaussian" or "hard".

    Returns:
        (keep int64 [K], new_scores [K] in scores' dtype): input indices in selection order
        and their scores when selected.
    """
    boxes, scores, iou_threshold = _check_nms_args(boxes, scores, iou_threshold)
    sigma = check_float_arg("sigma", sigma)
    if not sigma > 0 or math.isinf(sigma):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    score_threshold = check_float_arg("score_threshold", score_threshold)
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device), scores.new_empty((0,))
    backend = _backend.choose("soft_nms", boxes.device)
    if backend == "torch":
        return _reference.soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method)
    if backend == "triton":
        return _soft_nms_triton(boxes, scores, iou_threshold, sigma, score_threshold, METHODS[method])
    dtype = scores.dtype
    if backend == "cpu":
        boxes, scores = _for_cpu_kernel(boxes, scores)
    keep, new_scores = torch.ops.dets.soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, METHODS[method])
    return keep, new_scores.to(dtype)
