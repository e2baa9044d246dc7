"""CenterNet (``ctdet``) training targets for a whole batch in one call on the tensors' device.

Conventions (shared by every backend):
    Boxes are (x1, y1, x2, y2) in input pixels; labels are 0-based. The compute type T is
    float64 for float64 boxes and float32 otherwise; the box geometry is done in T with
    exactly these operations, so every backend truncates at the same places.
    slots   Slot k of image b holds box k (input order, no compaction); boxes k >= max_objs
            are ignored entirely (heatmap included), as in ctdet.
    box     divided by down_ratio, x clamped to [0, W-1] and y to [0, H-1]; w, h its sides.
            A box is skipped (slot left zero, nothing drawn) unless its coordinates lie in
            [-2^30, 2^30] (not NaN, not ±inf; the rule of ``ttf_targets``, so an absurd box
            such as ±1e30 is dropped rather than stretched over the map) and w > 0 and
            h > 0 there: zero-size boxes and boxes wholly outside the map.
    radius  max(0, int(gaussian_radius(ceil(h), ceil(w), min_overlap))) in float64, with the
            three quadratics solved properly (``dets.ops._heatmap.gaussian_radius``, as in
            mmdetection), not CenterNet's original expression, a known bug.
    centre  c = ((x1 + x2) / 2, (y1 + y2) / 2) of the clamped box, c_int = int(c).
    heatmap[label] = max over that class's boxes of exp(-((x-cx)² + (y-cy)²) / (2σ²)),
            σ = (2r+1)/6, on the window c_int ± r cut to the map; 0 elsewhere.
    wh[k] = (w, h), offset[k] = c - c_int, index[k] = c_int.y · W + c_int.x, mask[k] = 1.
    The Gaussians are evaluated in float64 on the CPU and by the reference, in float32 on
    CUDA and Triton (differences of a few float32 ulps).

Everything runs on the tensors' device with no per-box Python loop; the one host sync on
CUDA is the wrapper's check of gt_labels / num_boxes (one small device-to-host copy).
The op is not differentiable. Float outputs take gt_boxes' dtype (mask too, 1.0 / 0.0);
autocast does not change it.
"""

import torch

from . import _backend
from ._checks import check_float_arg
from ._heatmap import check_positive_int, check_target_args, register_fakes, run_targets
from .reference import centernet_targets as _reference

_backend.register_op("centernet_targets")

_KEYS = ("heatmap", "wh", "offset", "index", "mask")


@torch.library.custom_op("dets::centernet_targets_triton", mutates_args=())
def _centernet_targets_triton(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_boxes: torch.Tensor,
    num_classes: int,
    out_h: int,
    out_w: int,
    down_ratio: float,
    min_overlap: float,
    max_objs: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    kernels = _backend.triton_kernels("centernet_targets", boxes.device)
    return kernels.centernet_targets(
        boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, min_overlap, max_objs
    )


def _centernet_targets_fake(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, min_overlap, max_objs):
    batch = boxes.shape[0]
    return (
        boxes.new_empty((batch, num_classes, out_h, out_w)),
        boxes.new_empty((batch, max_objs, 2)),
        boxes.new_empty((batch, max_objs, 2)),
        boxes.new_empty((batch, max_objs), dtype=torch.int64),
        boxes.new_empty((batch, max_objs)),
    )


register_fakes("centernet_targets", _centernet_targets_triton, _centernet_targets_fake)


def centernet_targets(
    gt_boxes,
    gt_labels,
    num_classes: int,
    output_size,
    down_ratio: float = 4,
    min_overlap: float = 0.7,
    max_objs: int = 128,
    num_boxes: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """CenterNet's heatmap, size, offset, index and mask targets for a batch.

    Args:
        gt_boxes, gt_labels: the ground truth as per-image lists [Mi, 4] and [Mi], or as a
            padded batch (see ``dets.ops._heatmap`` for both forms and the dtypes).
        num_classes: C, the heatmap channels.
        output_size: (H, W) of the output map.
        down_ratio: input pixels per output cell (the output stride).
        min_overlap: the IoU the radius keeps, in (0, 1).
        max_objs: K, the object slots per image.
        num_boxes: int [B], only with the padded form.

    Returns:
        dict with heatmap [B, C, H, W], wh [B, K, 2], offset [B, K, 2], index [B, K] int64
        and mask [B, K]; floats in gt_boxes' dtype, all on its device.
    """
    num_classes, out_h, out_w, down_ratio = check_target_args(num_classes, output_size, down_ratio)
    max_objs = check_positive_int("max_objs", max_objs)
    min_overlap = check_float_arg("min_overlap", min_overlap, low=0.0, high=1.0)
    if not 0 < min_overlap < 1:
        raise ValueError(f"min_overlap must lie in (0, 1), got {min_overlap}")
    outputs = run_targets(
        "centernet_targets", _reference.centernet_targets, _centernet_targets_triton, _centernet_targets_fake,
        gt_boxes, gt_labels, num_boxes, num_classes, out_h, out_w, down_ratio, min_overlap, max_objs,
    )  # fmt: skip
    return dict(zip(_KEYS, outputs, strict=True))
