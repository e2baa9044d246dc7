"""TTFNet training targets in Triton (conventions: dets/ops/ttf_targets.py).

Two launches, no atomics, deterministic:
    1. one lane per box slot: validity, centre, radii, clipped window, and the box's
       normaliser A / ΣG (ΣG is separable: the product of two 1-D sums);
    2. one program per (image, pixel tile): walks the image's boxes in index order, skips
       those whose window misses the tile, max-merges each Gaussian into its class plane
       and keeps per pixel the smallest-area box (strict <, so equal areas keep the lower
       index); then writes box_target and reg_weight for every pixel of the tile.
Geometry is float32 with IEEE division and no FMA contraction, so centres and radii
truncate exactly where the CPU kernel and the reference do.
"""

import torch
import triton
import triton.language as tl

FLT_MAX = 3.4028234663852886e38
CENTER_LIMIT = 1073741824.0


@triton.jit
def _ttf_box_kernel(
    boxes_ptr,
    labels_ptr,
    num_ptr,
    area_ptr,
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
    x1 = tl.load(boxes_ptr + s * 4, mask=live, other=0.0).to(tl.float32)
    y1 = tl.load(boxes_ptr + s * 4 + 1, mask=live, other=0.0).to(tl.float32)
    x2 = tl.load(boxes_ptr + s * 4 + 2, mask=live, other=0.0).to(tl.float32)
    y2 = tl.load(boxes_ptr + s * 4 + 3, mask=live, other=0.0).to(tl.float32)
    lab = tl.load(labels_ptr + s, mask=live, other=-1)
    finite = (tl.abs(x1) <= FLT_MAX) & (tl.abs(y1) <= FLT_MAX) & (tl.abs(x2) <= FLT_MAX) & (tl.abs(y2) <= FLT_MAX)
    valid = live & (s % slots < n) & finite & (x2 >= x1) & (y2 >= y1) & (lab >= 0) & (lab < num_classes)
    x1 = tl.where(valid, x1, 0.0)
    y1 = tl.where(valid, y1, 0.0)
    x2 = tl.where(valid, x2, 0.0)
    y2 = tl.where(valid, y2, 0.0)

    area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    fw = tl.minimum(tl.maximum(tl.math.div_rn(x2, down_ratio), 0.0), wmax) - tl.minimum(
        tl.maximum(tl.math.div_rn(x1, down_ratio), 0.0), wmax
    )
    fh = tl.minimum(tl.maximum(tl.math.div_rn(y2, down_ratio), 0.0), hmax) - tl.minimum(
        tl.maximum(tl.math.div_rn(y1, down_ratio), 0.0), hmax
    )
    rw = (fw * 0.5 * alpha).to(tl.int32)
    rh = (fh * 0.5 * alpha).to(tl.int32)
    cxf = tl.math.div_rn((x1 + x2) * 0.5, down_ratio)
    cyf = tl.math.div_rn((y1 + y2) * 0.5, down_ratio)
    cx = tl.minimum(tl.maximum(cxf, -CENTER_LIMIT), CENTER_LIMIT).to(tl.int32)
    cy = tl.minimum(tl.maximum(cyf, -CENTER_LIMIT), CENTER_LIMIT).to(tl.int32)
    wx0 = tl.where(valid, tl.maximum(cx - rw, 0), 1)
    wx1 = tl.where(valid, tl.minimum(cx + rw, width - 1), 0)
    wy0 = tl.where(valid, tl.maximum(cy - rh, 0), 1)
    wy1 = tl.where(valid, tl.minimum(cy + rh, height - 1), 0)

    # exp(-d² / (2σ²)) with σ = (2r+1)/6, i.e. exp(-d² · 18 / (2r+1)²).
    dw = (2 * rw + 1).to(tl.float32)
    dh = (2 * rh + 1).to(tl.float32)
    ax = tl.math.div_rn(18.0, dw * dw)
    ay = tl.math.div_rn(18.0, dh * dh)
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
    tl.store(win_ptr + s * 4, wx0, mask=live)
    tl.store(win_ptr + s * 4 + 1, wx1, mask=live)
    tl.store(win_ptr + s * 4 + 2, wy0, mask=live)
    tl.store(win_ptr + s * 4 + 3, wy1, mask=live)
    tl.store(ctr_ptr + s * 2, cx, mask=live)
    tl.store(ctr_ptr + s * 2 + 1, cy, mask=live)
    tl.store(coef_ptr + s * 3, ax, mask=live)
    tl.store(coef_ptr + s * 3 + 1, ay, mask=live)
    tl.store(coef_ptr + s * 3 + 2, scale, mask=live)


@triton.jit
def _ttf_draw_kernel(
    boxes_ptr,
    labels_ptr,
    area_ptr,
    win_ptr,
    ctr_ptr,
    coef_ptr,
    heat_ptr,
    target_ptr,
    weight_ptr,
    slots,
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
    inside = (ys < height) & (xs < width)
    pix = ys.to(tl.int64) * width + xs
    best_area = tl.full([TILE_H, TILE_W], float("inf"), tl.float32)
    best_j = tl.full([TILE_H, TILE_W], -1, tl.int32)
    best_g = tl.full([TILE_H, TILE_W], 0.0, tl.float32)
    for j in range(0, slots):
        s = b.to(tl.int64) * slots + j
        x0 = tl.load(win_ptr + s * 4)
        x1 = tl.load(win_ptr + s * 4 + 1)
        y0 = tl.load(win_ptr + s * 4 + 2)
        y1 = tl.load(win_ptr + s * 4 + 3)
        if (x0 <= x1) & (y0 <= y1) & (x0 < tx0 + TILE_W) & (x1 >= tx0) & (y0 < ty0 + TILE_H) & (y1 >= ty0):
            cx = tl.load(ctr_ptr + s * 2)
            cy = tl.load(ctr_ptr + s * 2 + 1)
            ax = tl.load(coef_ptr + s * 3)
            ay = tl.load(coef_ptr + s * 3 + 1)
            area = tl.load(area_ptr + s)
            lab = tl.load(labels_ptr + s)
            dx = (xs - cx).to(tl.float32)
            dy = (ys - cy).to(tl.float32)
            g = tl.exp(-(dx * dx * ax + dy * dy * ay))
            hit = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
            hp = heat_ptr + (b * num_classes + lab).to(tl.int64) * plane + pix
            old = tl.load(hp, mask=hit, other=0.0)
            tl.store(hp, tl.maximum(old, g.to(old.dtype)), mask=hit)
            better = hit & (area < best_area)
            best_area = tl.where(better, area, best_area)
            best_j = tl.where(better, j, best_j)
            best_g = tl.where(better, g, best_g)
    has = inside & (best_j >= 0)
    sb = b.to(tl.int64) * slots + tl.maximum(best_j, 0)
    for k in tl.static_range(4):
        v = tl.load(boxes_ptr + sb * 4 + k, mask=has, other=-1.0)
        tl.store(target_ptr + (b * 4 + k).to(tl.int64) * plane + pix, v, mask=inside)
    scale = tl.load(coef_ptr + sb * 3 + 2, mask=has, other=0.0)
    out = (best_g * scale).to(weight_ptr.dtype.element_ty)
    tl.store(weight_ptr + b.to(tl.int64) * plane + pix, out, mask=inside)


def ttf_targets(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, alpha, area_process):
    """boxes [B, M, 4] contiguous, labels [B, M] int64, num_boxes [B] int64 (validated)."""
    batch, slots = boxes.shape[:2]
    dev = boxes.device
    heat = torch.zeros((batch, num_classes, out_h, out_w), dtype=boxes.dtype, device=dev)
    target = torch.empty((batch, 4, out_h, out_w), dtype=boxes.dtype, device=dev)
    weight = torch.empty((batch, 1, out_h, out_w), dtype=boxes.dtype, device=dev)
    total = batch * slots
    area = torch.empty(total, dtype=torch.float32, device=dev)
    win = torch.empty((total, 4), dtype=torch.int32, device=dev)
    ctr = torch.empty((total, 2), dtype=torch.int32, device=dev)
    coef = torch.empty((total, 3), dtype=torch.float32, device=dev)
    if total > 0:
        block = 128
        _ttf_box_kernel[(triton.cdiv(total, block),)](
            boxes, labels, num_boxes, area, win, ctr, coef,
            total, slots, num_classes, out_h, out_w, max(out_h, out_w),
            float(out_w - 1), float(out_h - 1), down_ratio, alpha,
            AREA_PROCESS=area_process, BLOCK=block, enable_fp_fusion=False,
        )  # fmt: skip
    tile_h, tile_w = 8, 32
    _ttf_draw_kernel[(batch, triton.cdiv(out_h, tile_h), triton.cdiv(out_w, tile_w))](
        boxes, labels, area, win, ctr, coef, heat, target, weight,
        slots, num_classes, out_h, out_w, out_h * out_w, TILE_H=tile_h, TILE_W=tile_w,
    )  # fmt: skip
    return heat, target, weight
