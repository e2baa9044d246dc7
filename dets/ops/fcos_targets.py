"""FCOS training targets (``compute_targets_for_locations`` of FCOS / VoVNet-FCOS, with the
later ``get_sample_region`` centre sampling as an option), for a whole batch in one call.

Conventions (shared by every backend):
    Locations. Level l has an H_l × W_l map at stride s_l; location (i, j) (row i, column j)
            sits at x = s_l // 2 + j·s_l, y = s_l // 2 + i·s_l input pixels (integer
            division, as FCOS's ``compute_locations``). Outputs are flattened level by level,
            each level row-major: index = sum_{k<l} H_k·W_k + i·W_l + j.
    Compute type T: float64 for float64 boxes, float32 otherwise; every comparison below is
            done in T with exactly these operations, so all backends decide alike.
    Distances (l, t, r, b) = (x - x1, y - y1, x2 - x, y2 - y) to a box (x1, y1, x2, y2).
    Inside. Without centre sampling (radius 0): min(l, t, r, b) > 0. With radius r > 0: the
            same strict test against the box's centre region [cx - r·s_l, cx + r·s_l] ×
            [cy - r·s_l, cy + r·s_l] cut to the box, cx = (x1 + x2) / 2 (get_sample_region;
            its "first box centred at x = 0 means no boxes" shortcut is not reproduced).
    Scale. A box is a candidate at level l only if lo_l <= max(l, t, r, b) <= hi_l, both
            ends inclusive as in the seed (so a distance of exactly 64 qualifies for both
            (0, 64) and (64, 128)); the distances are always to the whole box.
    Choice. Among the candidates, the smallest area (x2 - x1 + 1)·(y2 - y1 + 1) (the seed's
            BoxList "+1" area); equal areas go to the lowest box index of the image.
    Background (no candidate): label -1, reg_targets 0, centerness 0. The seed's INF area
            cut-off (boxes of area >= 1e8 become background) is not reproduced.
    Outputs. labels: the chosen box's 0-based class; reg_targets: its (l, t, r, b) in input
            pixels (not divided by the stride); centerness:
            sqrt(min(l, r) / max(l, r) · min(t, b) / max(t, b)).
    Boxes with a non-finite coordinate, or x2 <= x1 or y2 <= y1, are never chosen; padding
    slots j >= num_boxes[b] are ignored whatever they hold.

Memory: the kernels walk each location's boxes in registers, O(locations × boxes) time and
only the outputs in memory (B·L·(8 + 5·sizeof(T)) bytes). The Python implementations of
FCOS, torchvision and mmdet build [L, M, 4] distance tensors per image (plus [L, M] masks and
areas): at 800×1333 input (L = 22 400 over strides 8..128) and 50 boxes that is about 18 MB
of float32 distances per image, against 0.6 MB of outputs.

The op is not differentiable. Outputs take gt_boxes' dtype (labels int64).
"""

import math

import torch

from . import _backend
from ._checks import check_float_arg
from ._heatmap import _as_int, batch_gt, choose_backend
from .reference import fcos_targets as _reference

_backend.register_op("fcos_targets")

# FCOS's OBJECT_SIZES_OF_INTEREST for P3-P7 (the seed's -1 lower end only ever meets
# distances > 0, so 0 is the same rule).
SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf))
STRIDES = (8, 16, 32, 64, 128)


@torch.library.custom_op("dets::fcos_targets_triton", mutates_args=())
def _fcos_targets_triton(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_boxes: torch.Tensor,
    heights: list[int],
    widths: list[int],
    strides: list[int],
    range_lo: list[float],
    range_hi: list[float],
    radius: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kernels = _backend.triton_kernels("fcos_targets", boxes.device)
    return kernels.fcos_targets(boxes, labels, num_boxes, heights, widths, strides, range_lo, range_hi, radius)


def _fcos_targets_fake(boxes, labels, num_boxes, heights, widths, strides, range_lo, range_hi, radius):
    batch = boxes.shape[0]
    total = sum(h * w for h, w in zip(heights, widths, strict=True))
    return (
        labels.new_empty((batch, total)),
        boxes.new_empty((batch, total, 4)),
        boxes.new_empty((batch, total)),
    )


_fcos_targets_triton.register_fake(_fcos_targets_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::fcos_targets")(_fcos_targets_fake)


def _check_levels(level_sizes, strides, size_ranges):
    if not isinstance(level_sizes, (list, tuple)) or len(level_sizes) == 0:
        raise ValueError(f"level_sizes must be a non-empty sequence of (H, W), got {level_sizes!r}")
    heights, widths = [], []
    for k, size in enumerate(level_sizes):
        if not (isinstance(size, (list, tuple, torch.Size)) and len(size) == 2):
            raise ValueError(f"level_sizes[{k}] must be a pair (H, W), got {size!r}")
        h, w = (_as_int(v) for v in size)
        if h is None or w is None or h < 0 or w < 0:
            raise ValueError(f"level_sizes[{k}] must hold ints >= 0, got {size!r}")
        heights.append(h)
        widths.append(w)
    if not isinstance(strides, (list, tuple)) or len(strides) != len(level_sizes):
        raise ValueError(f"strides must give one int per level ({len(level_sizes)}), got {strides!r}")
    stride_list = []
    for k, s in enumerate(strides):
        value = _as_int(s)
        if value is None or value <= 0:
            raise ValueError(f"strides[{k}] must be a positive int, got {s!r}")
        stride_list.append(value)
    if not isinstance(size_ranges, (list, tuple)) or len(size_ranges) != len(level_sizes):
        raise ValueError(f"size_ranges must give one (lo, hi) per level ({len(level_sizes)}), got {size_ranges!r}")
    lo, hi = [], []
    for k, pair in enumerate(size_ranges):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"size_ranges[{k}] must be a pair (lo, hi), got {pair!r}")
        a = check_float_arg(f"size_ranges[{k}][0]", pair[0])
        b = check_float_arg(f"size_ranges[{k}][1]", pair[1])
        if a > b:
            raise ValueError(f"size_ranges[{k}] must have lo <= hi, got {pair!r}")
        lo.append(a)
        hi.append(b)
    return heights, widths, stride_list, lo, hi


def fcos_targets(
    level_sizes,
    gt_boxes,
    gt_labels,
    num_boxes: torch.Tensor | None = None,
    *,
    strides=STRIDES,
    size_ranges=SIZE_RANGES,
    center_sampling_radius: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FCOS's per-location class, (l, t, r, b) and centerness targets for a batch.

    Args:
        level_sizes: one (H, W) per pyramid level, e.g. the P3-P7 feature map sizes.
        gt_boxes: a list of B float tensors [Mi, 4], or one padded tensor [B, M, 4] (then
            ``num_boxes`` gives the real boxes per image; None means all M). (x1, y1, x2, y2)
            in input pixels. float32/float64 on CPU, float32/float16/bfloat16 on CUDA.
        gt_labels: matching integer labels, a list of [Mi] or one [B, M]; 0-based, >= 0.
        num_boxes: int [B], only with the padded form.
        strides: one positive int stride per level (default P3-P7: 8, 16, 32, 64, 128).
        size_ranges: one (lo, hi) per level, both inclusive, on max(l, t, r, b) (default
            FCOS's (0, 64), (64, 128), (128, 256), (256, 512), (512, inf)).
        center_sampling_radius: 0 for FCOS's inside-box test, else r (FCOS "imprv": 1.5):
            positives only within r·stride of the box centre (module docstring).

    Returns:
        labels [B, L] int64 (-1 background), reg_targets [B, L, 4] and centerness [B, L] in
        gt_boxes' dtype, L = sum of H·W, flattened level by level (module docstring).
    """
    heights, widths, stride_list, lo, hi = _check_levels(level_sizes, strides, size_ranges)
    radius = check_float_arg("center_sampling_radius", center_sampling_radius, low=0.0)
    if not math.isfinite(radius):
        raise ValueError(f"center_sampling_radius must be finite, got {radius}")
    boxes, labels, num = batch_gt(gt_boxes, gt_labels, num_boxes, None)
    backend = choose_backend("fcos_targets", boxes)
    args = (heights, widths, stride_list, lo, hi, radius)
    if boxes.shape[0] == 0:
        return _fcos_targets_fake(boxes, labels, num, *args)
    if backend == "torch":
        return _reference.fcos_targets(
            boxes,
            labels,
            num,
            list(zip(heights, widths, strict=True)),
            stride_list,
            list(zip(lo, hi, strict=True)),
            radius,
        )
    boxes = boxes.contiguous()
    if backend == "triton":
        return _fcos_targets_triton(boxes, labels, num, *args)
    return torch.ops.dets.fcos_targets(boxes, labels, num, *args)
