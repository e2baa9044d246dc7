"""TTFNet training targets in Triton (conventions: dets/ops/ttf_targets.py).

Two launches (see heatmap_common): one lane per box slot works out validity, centre, radii,
the clipped window and the box's normaliser A / ΣG (ΣG is separable: the product of two
1-D sums); then the shared draw pass max-merges the Gaussians and, per pixel, takes
box_target and reg_weight from the smallest-area box.
"""

import torch
import triton
import triton.language as tl

from .heatmap_common import (
    BOX_BLOCK,
    COORD_LIMIT,
    draw,
    gaussian_coef,
    load_box,
    store_window,
    to_grid,
    window_records,
)


@triton.jit
def _ttf_box_kernel(
    boxes_ptr,
    labels_ptr,
    num_ptr,
    area_ptr,
    scale_ptr,
    win_ptr,
    ctr_ptr,
    coef_ptr,
    total,
    slots,
    num_classes,
    height,
    width,
    span,
    wmax,
    hmax,
    down_ratio,
    alpha,
    AREA_PROCESS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = s < total
    n = tl.load(num_ptr + s // slots, mask=live, other=0)
    x1, y1, x2, y2, sane = load_box(boxes_ptr, s, live)
    lab = tl.load(labels_ptr + s, mask=live, other=-1)
    valid = live & (s % slots < n) & sane & (x2 >= x1) & (y2 >= y1) & (lab >= 0) & (lab < num_classes)
    x1 = tl.where(valid, x1, 0.0)
    y1 = tl.where(valid, y1, 0.0)
    x2 = tl.where(valid, x2, 0.0)
    y2 = tl.where(valid, y2, 0.0)

    area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    fw = to_grid(x2, down_ratio, wmax) - to_grid(x1, down_ratio, wmax)
    fh = to_grid(y2, down_ratio, hmax) - to_grid(y1, down_ratio, hmax)
    rw = (fw * 0.5 * alpha).to(tl.int32)
    rh = (fh * 0.5 * alpha).to(tl.int32)
    cxf = tl.math.div_rn((x1 + x2) * 0.5, down_ratio)
    cyf = tl.math.div_rn((y1 + y2) * 0.5, down_ratio)
    cx = tl.minimum(tl.maximum(cxf, -COORD_LIMIT), COORD_LIMIT).to(tl.int32)
    cy = tl.minimum(tl.maximum(cyf, -COORD_LIMIT), COORD_LIMIT).to(tl.int32)
    wx0, wx1, wy0, wy1 = store_window(win_ptr, ctr_ptr, s, live, valid, cx, cy, rw, rh, lab, height, width)

    ax = gaussian_coef(rw)
    ay = gaussian_coef(rh)
    sx = tl.full([BLOCK], 0.0, tl.float32)
    sy = tl.full([BLOCK], 0.0, tl.float32)
    for t in range(0, span):
        dx = (wx0 + t - cx).to(tl.float32)
        dy = (wy0 + t - cy).to(tl.float32)
        sx += tl.where(wx0 + t <= wx1, tl.exp(-(dx * dx) * ax), 0.0)
        sy += tl.where(wy0 + t <= wy1, tl.exp(-(dy * dy) * ay), 0.0)
    if AREA_PROCESS == 0:
        weight = tl.log(area)
    elif AREA_PROCESS == 1:
        weight = tl.sqrt_rn(area)
    elif AREA_PROCESS == 2:
        weight = tl.full([BLOCK], 1.0, tl.float32)
    else:
        weight = area
    norm = sx * sy
    scale = tl.where(norm > 0, weight / tl.where(norm > 0, norm, 1.0), 0.0)

    tl.store(area_ptr + s, area, mask=live)
    tl.store(scale_ptr + s, scale, mask=live)
    tl.store(coef_ptr + s * 2, ax, mask=live)
    tl.store(coef_ptr + s * 2 + 1, ay, mask=live)


@triton.jit
def _ttf_gaussian(coef_ptr, s, dx, dy):
    """exp(-(dx² ax + dy² ay)): one σ per axis."""
    ax = tl.load(coef_ptr + s * 2)
    ay = tl.load(coef_ptr + s * 2 + 1)
    return tl.exp(-(dx * dx * ax + dy * dy * ay))


def ttf_targets(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, alpha, area_process):
    """boxes [B, M, 4] contiguous, labels [B, M] int64, num_boxes [B] int64 (validated)."""
    batch, slots = boxes.shape[:2]
    dev = boxes.device
    heat = torch.zeros((batch, num_classes, out_h, out_w), dtype=boxes.dtype, device=dev)
    target = torch.empty((batch, 4, out_h, out_w), dtype=boxes.dtype, device=dev)
    weight = torch.empty((batch, 1, out_h, out_w), dtype=boxes.dtype, device=dev)
    total = batch * slots
    area = torch.empty(total, dtype=torch.float32, device=dev)
    scale = torch.empty(total, dtype=torch.float32, device=dev)
    coef = torch.empty((total, 2), dtype=torch.float32, device=dev)
    win, ctr = window_records(total, dev)
    if total > 0:
        _ttf_box_kernel[(triton.cdiv(total, BOX_BLOCK),)](
            boxes, labels, num_boxes, area, scale, win, ctr, coef,
            total, slots, num_classes, out_h, out_w, max(out_h, out_w),
            float(out_w - 1), float(out_h - 1), down_ratio, alpha,
            AREA_PROCESS=area_process, BLOCK=BOX_BLOCK, enable_fp_fusion=False,
        )  # fmt: skip
    draw(win, ctr, coef, heat, slots, _ttf_gaussian, box_planes=(boxes, area, scale, target, weight))
    return heat, target, weight
