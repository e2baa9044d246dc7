"""TTFNet training targets (``target_single_image`` with ``wh_gaussian=True``,
``wh_agnostic=True``), for a whole batch in one call on the tensors' device.

Conventions (shared by every backend):
    Boxes are (x1, y1, x2, y2) in input pixels; labels are 0-based. The compute type T is
    float64 for float64 boxes and float32 otherwise; the scalar geometry below is done in T
    with exactly these operations, so every backend truncates at the same places.
    area    (x2 - x1 + 1)·(y2 - y1 + 1) (the "+1" pixel convention of the original code).
    radii   the box divided by down_ratio, x clamped to [0, W-1] and y to [0, H-1], gives
            w', h'; r_w = int(w' / 2 · alpha), r_h = int(h' / 2 · alpha).
    centre  c = int((x1 + x2) / 2 / down_ratio), likewise y, from the *unclamped* box
            (truncation toward zero; values beyond ±2^30 are clamped first, which only
            matters for down_ratio < 1).
    Gaussian G(x, y) = exp(-((x-cx)²/(2σx²) + (y-cy)²/(2σy²))), σ = (2r+1)/6 per axis, on
            the window [cx-r_w, cx+r_w] × [cy-r_h, cy+r_h] cut to the map (the support; G
            never falls below exp(-9) there, so the original's eps·max cut-off never bites).
    heatmap[label] is the maximum of the Gaussians of that class (0 elsewhere).
    box_target and reg_weight at a pixel come from the *smallest-area* box whose support
    holds it; among equal areas, the box with the *lower index* in its image wins (as if the
    boxes were drawn by decreasing area, then decreasing index, each overwriting).
    box_target is that box's original (x1, y1, x2, y2), -1 where no support reaches.
    reg_weight is G · A / ΣG, ΣG over the box's own support (ignoring overwrites), with
    A = log(area) ("log"), sqrt(area) ("sqrt"), 1 ("norm") or area ("none"); 0 elsewhere.
    Invalid boxes, drawn nowhere: a coordinate that is NaN or outside [-2^30, 2^30] (which
    includes ±inf; absurd values such as ±1e30 would otherwise make the area, its log and
    reg_weight infinite), or x2 < x1, or y2 < y1; float32 and float64 outputs are finite.
    Zero-area boxes (x1 == x2 and/or y1 == y2) are valid: area >= 1, radius 0 or more, a
    peak of 1 at their centre. Boxes partly outside the map draw the part of their window
    inside it.
    The Gaussians are evaluated in float64 on the CPU and by the reference, in float32 on
    CUDA and Triton (differences of a few float32 ulps).

Everything runs on the tensors' device with no per-box Python loop; the one host sync on
CUDA is the wrapper's check of gt_labels / num_boxes (one small device-to-host copy).
The op is not differentiable. Outputs take gt_boxes' dtype; autocast does not change it.
"""

import torch

from . import _backend
from ._checks import check_float_arg
from ._heatmap import check_target_args, register_fakes, run_targets
from .reference import ttf_targets as _reference
from .reference.ttf_targets import AREA_PROCESSES

_backend.register_op("ttf_targets")


@torch.library.custom_op("dets::ttf_targets_triton", mutates_args=())
def _ttf_targets_triton(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_boxes: torch.Tensor,
    num_classes: int,
    out_h: int,
    out_w: int,
    down_ratio: float,
    alpha: float,
    area_process: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kernels = _backend.triton_kernels("ttf_targets", boxes.device)
    return kernels.ttf_targets(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, alpha, area_process)


def _ttf_targets_fake(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, alpha, area_process):
    batch = boxes.shape[0]
    return (
        boxes.new_empty((batch, num_classes, out_h, out_w)),
        boxes.new_empty((batch, 4, out_h, out_w)),
        boxes.new_empty((batch, 1, out_h, out_w)),
    )


register_fakes("ttf_targets", _ttf_targets_triton, _ttf_targets_fake)


def ttf_targets(
    gt_boxes,
    gt_labels,
    num_classes: int,
    output_size,
    down_ratio: float = 4,
    alpha: float = 0.54,
    area_process: str = "log",
    num_boxes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TTFNet's heatmap, box and regression-weight targets for a batch.

    Args:
        gt_boxes, gt_labels: the ground truth, per-image lists or one padded batch (the
            forms and dtypes of ``dets.ops._heatmap``); labels 0-based in [0, C).
        num_classes: C, the heatmap channels.
        output_size: (H, W) of the output map.
        down_ratio: input pixels per output cell (the output stride).
        alpha: Gaussian size as a fraction of the box, in (0, 1].
        area_process: "log", "sqrt", "norm" or "none": the per-box weight A (module doc).
        num_boxes: int [B], only with the padded form.

    Returns:
        heatmap [B, C, H, W], box_target [B, 4, H, W], reg_weight [B, 1, H, W], all in
        gt_boxes' dtype on its device.
    """
    num_classes, out_h, out_w, down_ratio = check_target_args(num_classes, output_size, down_ratio)
    alpha = check_float_arg("alpha", alpha, low=0.0, high=1.0)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if area_process not in AREA_PROCESSES:
        raise ValueError(f"area_process must be one of {AREA_PROCESSES}, got {area_process!r}")
    code = AREA_PROCESSES.index(area_process)
    return run_targets(
        "ttf_targets", _reference.ttf_targets, _ttf_targets_triton, _ttf_targets_fake,
        gt_boxes, gt_labels, num_boxes, num_classes, out_h, out_w, down_ratio, alpha, code,
    )  # fmt: skip
