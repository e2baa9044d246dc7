"""CenterNet (ctdet) training targets in Triton (conventions: dets/ops/centernet_targets.py).

Two launches, no atomics, deterministic:
    1. one lane per object slot (image, k < max_objs): validity, clamped box, radius (float64,
       the corrected quadratics), centre; writes wh, offset, index and mask of the slot and
       the Gaussian's clipped window;
    2. one program per (image, pixel tile): walks the image's slots, skips windows that
       miss the tile, and max-merges each Gaussian into its class plane.
Geometry uses IEEE division, square root and no FMA contraction, so centres and radii
truncate exactly where the CPU kernel and the reference do.
"""

import torch
import triton
import triton.language as tl

FLT_MAX = 3.4028234663852886e38


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
    x1 = tl.load(boxes_ptr + src * 4, mask=real, other=0.0).to(tl.float32)
    y1 = tl.load(boxes_ptr + src * 4 + 1, mask=real, other=0.0).to(tl.float32)
    x2 = tl.load(boxes_ptr + src * 4 + 2, mask=real, other=0.0).to(tl.float32)
    y2 = tl.load(boxes_ptr + src * 4 + 3, mask=real, other=0.0).to(tl.float32)
    lab = tl.load(labels_ptr + src, mask=real, other=-1)
    finite = (tl.abs(x1) <= FLT_MAX) & (tl.abs(y1) <= FLT_MAX) & (tl.abs(x2) <= FLT_MAX) & (tl.abs(y2) <= FLT_MAX)
    fx1 = tl.minimum(tl.maximum(tl.math.div_rn(tl.where(finite, x1, 0.0), down_ratio), 0.0), wmax)
    fx2 = tl.minimum(tl.maximum(tl.math.div_rn(tl.where(finite, x2, 0.0), down_ratio), 0.0), wmax)
    fy1 = tl.minimum(tl.maximum(tl.math.div_rn(tl.where(finite, y1, 0.0), down_ratio), 0.0), hmax)
    fy2 = tl.minimum(tl.maximum(tl.math.div_rn(tl.where(finite, y2, 0.0), down_ratio), 0.0), hmax)
    w = fx2 - fx1
    h = fy2 - fy1
    valid = real & finite & (w > 0) & (h > 0) & (lab >= 0) & (lab < num_classes)

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

    d = (2 * radius + 1).to(tl.float32)
    tl.store(win_ptr + s * 4, tl.where(valid, tl.maximum(ix - radius, 0), 1), mask=live)
    tl.store(win_ptr + s * 4 + 1, tl.where(valid, tl.minimum(ix + radius, width - 1), 0), mask=live)
    tl.store(win_ptr + s * 4 + 2, tl.where(valid, tl.maximum(iy - radius, 0), 1), mask=live)
    tl.store(win_ptr + s * 4 + 3, tl.where(valid, tl.minimum(iy + radius, height - 1), 0), mask=live)
    tl.store(ctr_ptr + s * 3, ix, mask=live)
    tl.store(ctr_ptr + s * 3 + 1, iy, mask=live)
    tl.store(ctr_ptr + s * 3 + 2, tl.where(valid, lab, 0).to(tl.int32), mask=live)
    # exp(-d² / (2σ²)) with σ = (2r+1)/6, i.e. exp(-d² · 18 / (2r+1)²).
    tl.store(coef_ptr + s, tl.math.div_rn(18.0, d * d), mask=live)


@triton.jit
def _centernet_draw_kernel(
    win_ptr,
    ctr_ptr,
    coef_ptr,
    heat_ptr,
    max_objs,
    num_classes,
    height,
    width,
    plane,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
):
    b = tl.program_id(0)
    ty0 = tl.program_id(1) * TILE_H
    tx0 = tl.program_id(2) * TILE_W
    ys = ty0 + tl.arange(0, TILE_H)[:, None]
    xs = tx0 + tl.arange(0, TILE_W)[None, :]
    pix = ys.to(tl.int64) * width + xs
    for k in range(0, max_objs):
        s = b.to(tl.int64) * max_objs + k
        x0 = tl.load(win_ptr + s * 4)
        x1 = tl.load(win_ptr + s * 4 + 1)
        y0 = tl.load(win_ptr + s * 4 + 2)
        y1 = tl.load(win_ptr + s * 4 + 3)
        if (x0 <= x1) & (y0 <= y1) & (x0 < tx0 + TILE_W) & (x1 >= tx0) & (y0 < ty0 + TILE_H) & (y1 >= ty0):
            cx = tl.load(ctr_ptr + s * 3)
            cy = tl.load(ctr_ptr + s * 3 + 1)
            lab = tl.load(ctr_ptr + s * 3 + 2)
            a = tl.load(coef_ptr + s)
            dx = (xs - cx).to(tl.float32)
            dy = (ys - cy).to(tl.float32)
            g = tl.exp(-(dx * dx + dy * dy) * a)
            hit = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
            hp = heat_ptr + (b * num_classes + lab).to(tl.int64) * plane + pix
            old = tl.load(hp, mask=hit, other=0.0)
            tl.store(hp, tl.maximum(old, g.to(old.dtype)), mask=hit)


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
    win = torch.empty((total, 4), dtype=torch.int32, device=dev)
    ctr = torch.empty((total, 3), dtype=torch.int32, device=dev)
    coef = torch.empty(total, dtype=torch.float32, device=dev)
    # A float64 tensor, not a kernel scalar (those are float32): the radius is float64.
    overlap = torch.tensor([min_overlap], dtype=torch.float64, device=dev)
    block = 128
    _centernet_box_kernel[(triton.cdiv(total, block),)](
        boxes, labels, num_boxes, overlap, wh, offset, index, mask, win, ctr, coef,
        total, slots, max_objs, num_classes, out_h, out_w, float(out_w - 1), float(out_h - 1), down_ratio,
        BLOCK=block, enable_fp_fusion=False,
    )  # fmt: skip
    tile_h, tile_w = 8, 32
    _centernet_draw_kernel[(batch, triton.cdiv(out_h, tile_h), triton.cdiv(out_w, tile_w))](
        win, ctr, coef, heat, max_objs, num_classes, out_h, out_w, out_h * out_w,
        TILE_H=tile_h, TILE_W=tile_w,
    )  # fmt: skip
    return heat, wh, offset, index, mask
