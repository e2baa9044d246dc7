"""CenterNet (ctdet) training targets in Triton (conventions: dets/ops/centernet_targets.py).

Two launches (see heatmap_common): one lane per object slot (image, k < max_objs) works out
validity, the clamped box, the radius (float64, the corrected quadratics) and the centre,
and writes wh, offset, index and mask of the slot and its window record; then the shared
draw pass max-merges each Gaussian into its class plane.
"""

import torch
import triton
import triton.language as tl

from .heatmap_common import BOX_BLOCK, draw, gaussian_coef, load_box, store_window, to_grid, window_records


@triton.jit
def _centernet_box_kernel(
    boxes_ptr,
    labels_ptr,
    num_ptr,
    overlap_ptr,
    wh_ptr,
    offset_ptr,
    index_ptr,
    mask_ptr,
    win_ptr,
    ctr_ptr,
    coef_ptr,
    total,
    slots,
    max_objs,
    num_classes,
    height,
    width,
    wmax,
    hmax,
    down_ratio,
    BLOCK: tl.constexpr,
):
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = s < total
    b = s // max_objs
    k = s % max_objs
    n = tl.minimum(tl.load(num_ptr + b, mask=live, other=0), slots)
    real = live & (k < n)
    src = b.to(tl.int64) * slots + k
    x1, y1, x2, y2, sane = load_box(boxes_ptr, src, real)
    lab = tl.load(labels_ptr + src, mask=real, other=-1)
    fx1 = to_grid(tl.where(sane, x1, 0.0), down_ratio, wmax)
    fx2 = to_grid(tl.where(sane, x2, 0.0), down_ratio, wmax)
    fy1 = to_grid(tl.where(sane, y1, 0.0), down_ratio, hmax)
    fy2 = to_grid(tl.where(sane, y2, 0.0), down_ratio, hmax)
    w = fx2 - fx1
    h = fy2 - fy1
    valid = real & sane & (w > 0) & (h > 0) & (lab >= 0) & (lab < num_classes)

    # The corrected radius, in float64, in the operation order of dets.ops._heatmap
    # (float64 sqrt and division lower to their IEEE-rounded forms).
    o = tl.load(overlap_ptr)
    hd = tl.math.ceil(h).to(tl.float64)
    wd = tl.math.ceil(w).to(tl.float64)
    b1 = hd + wd
    c1 = wd * hd * (1 - o) / (1 + o)
    r1 = (b1 - tl.sqrt(b1 * b1 - 4 * c1)) / 2
    b2 = 2 * (hd + wd)
    c2 = (1 - o) * wd * hd
    r2 = (b2 - tl.sqrt(b2 * b2 - 16 * c2)) / 8
    a3 = 4 * o
    b3 = -2 * o * (hd + wd)
    c3 = (o - 1) * wd * hd
    r3 = (b3 + tl.sqrt(b3 * b3 - 4 * a3 * c3)) / (2 * a3)
    r = tl.minimum(tl.minimum(r1, r2), r3)
    radius = tl.where(valid & (r > 0), r, 0.0).to(tl.int32)

    cx = (fx1 + fx2) * 0.5
    cy = (fy1 + fy2) * 0.5
    ix = cx.to(tl.int32)
    iy = cy.to(tl.int32)
    dt = wh_ptr.dtype.element_ty
    tl.store(wh_ptr + s * 2, tl.where(valid, w, 0.0).to(dt), mask=live)
    tl.store(wh_ptr + s * 2 + 1, tl.where(valid, h, 0.0).to(dt), mask=live)
    tl.store(offset_ptr + s * 2, tl.where(valid, cx - ix.to(tl.float32), 0.0).to(dt), mask=live)
    tl.store(offset_ptr + s * 2 + 1, tl.where(valid, cy - iy.to(tl.float32), 0.0).to(dt), mask=live)
    tl.store(index_ptr + s, tl.where(valid, iy.to(tl.int64) * width + ix, 0), mask=live)
    tl.store(mask_ptr + s, tl.where(valid, 1.0, 0.0).to(dt), mask=live)
    store_window(win_ptr, ctr_ptr, s, live, valid, ix, iy, radius, radius, lab, height, width)
    tl.store(coef_ptr + s, gaussian_coef(radius), mask=live)


@triton.jit
def _centernet_gaussian(coef_ptr, s, dx, dy):
    """exp(-(dx² + dy²) a): one σ for both axes."""
    return tl.exp(-(dx * dx + dy * dy) * tl.load(coef_ptr + s))


def centernet_targets(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, min_overlap, max_objs):
    """boxes [B, M, 4] contiguous, labels [B, M] int64, num_boxes [B] int64 (validated)."""
    batch, slots = boxes.shape[:2]
    dev, dt = boxes.device, boxes.dtype
    heat = torch.zeros((batch, num_classes, out_h, out_w), dtype=dt, device=dev)
    wh = torch.empty((batch, max_objs, 2), dtype=dt, device=dev)
    offset = torch.empty((batch, max_objs, 2), dtype=dt, device=dev)
    index = torch.empty((batch, max_objs), dtype=torch.int64, device=dev)
    mask = torch.empty((batch, max_objs), dtype=dt, device=dev)
    total = batch * max_objs
    win, ctr = window_records(total, dev)
    coef = torch.empty(total, dtype=torch.float32, device=dev)
    # A float64 tensor, not a kernel scalar (those are float32): the radius is float64.
    overlap = torch.tensor([min_overlap], dtype=torch.float64, device=dev)
    _centernet_box_kernel[(triton.cdiv(total, BOX_BLOCK),)](
        boxes, labels, num_boxes, overlap, wh, offset, index, mask, win, ctr, coef,
        total, slots, max_objs, num_classes, out_h, out_w, float(out_w - 1), float(out_h - 1), down_ratio,
        BLOCK=BOX_BLOCK, enable_fp_fusion=False,
    )  # fmt: skip
    draw(win, ctr, coef, heat, max_objs, _centernet_gaussian)
    return heat, wh, offset, index, mask
