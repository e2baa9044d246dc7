"""Pieces shared by the Triton heatmap-target kernels (ttf_targets, centernet_targets).

Each op runs two launches, no atomics, deterministic:
    1. its own box pass, one lane per box slot: the box's validity, centre and radii, its
       Gaussian coefficients, and its window record (``store_window``);
    2. ``draw_kernel``, one program per (image, TILE_H x TILE_W pixel tile): walks the
       image's records in slot order, skips those whose window misses the tile and
       max-merges each Gaussian into its class plane. With BOX_PLANES it also keeps per
       pixel the smallest-area box (strict <, so equal areas keep the lower slot) and
       writes box_target and reg_weight for every pixel of the tile.
Window records, per box slot s:
    win  int32 [S, 4]  x0, x1, y0, y1: the window cut to the map (empty: x0 > x1)
    ctr  int32 [S, 3]  the centre cx, cy and the class label
Geometry uses IEEE division and the launchers turn off FMA contraction, so centres and
radii truncate exactly where the CPU kernels and the references do.
"""

import torch
import triton
import triton.language as tl

# Boxes with a coordinate beyond ±2^30 (or NaN) are invalid; centres are clamped to it
# before truncation (csrc/heatmap_targets.h, kCoordLimit).
COORD_LIMIT = 1073741824.0
BOX_BLOCK = 128
TILE_H = 8
TILE_W = 32


@triton.jit
def load_box(boxes_ptr, slot, mask):
    """(x1, y1, x2, y2) of box `slot` in float32 (0 where masked) and whether all four
    lie within ±COORD_LIMIT (false for NaN and infinities)."""
    x1 = tl.load(boxes_ptr + slot * 4, mask=mask, other=0.0).to(tl.float32)
    y1 = tl.load(boxes_ptr + slot * 4 + 1, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(boxes_ptr + slot * 4 + 2, mask=mask, other=0.0).to(tl.float32)
    y2 = tl.load(boxes_ptr + slot * 4 + 3, mask=mask, other=0.0).to(tl.float32)
    sane = (
        (tl.abs(x1) <= COORD_LIMIT) & (tl.abs(y1) <= COORD_LIMIT) & (tl.abs(x2) <= COORD_LIMIT)
        & (tl.abs(y2) <= COORD_LIMIT)
    )  # fmt: skip
    return x1, y1, x2, y2, sane


@triton.jit
def to_grid(v, down_ratio, vmax):
    """A coordinate on the output grid, clamped to the map [0, vmax]."""
    return tl.minimum(tl.maximum(tl.math.div_rn(v, down_ratio), 0.0), vmax)


@triton.jit
def gaussian_coef(r):
    """a with exp(-d² a) = exp(-d² / (2σ²)) for σ = (2r+1)/6, i.e. a = 18 / (2r+1)²."""
    d = (2 * r + 1).to(tl.float32)
    return tl.math.div_rn(18.0, d * d)


@triton.jit
def store_window(win_ptr, ctr_ptr, slot, live, valid, cx, cy, rw, rh, label, height, width):
    """Stores the record of the window [cx - rw, cx + rw] x [cy - rh, cy + rh] cut to the
    map (empty unless `valid`); returns its x0, x1, y0, y1."""
    x0 = tl.where(valid, tl.maximum(cx - rw, 0), 1)
    x1 = tl.where(valid, tl.minimum(cx + rw, width - 1), 0)
    y0 = tl.where(valid, tl.maximum(cy - rh, 0), 1)
    y1 = tl.where(valid, tl.minimum(cy + rh, height - 1), 0)
    tl.store(win_ptr + slot * 4, x0, mask=live)
    tl.store(win_ptr + slot * 4 + 1, x1, mask=live)
    tl.store(win_ptr + slot * 4 + 2, y0, mask=live)
    tl.store(win_ptr + slot * 4 + 3, y1, mask=live)
    tl.store(ctr_ptr + slot * 3, cx, mask=live)
    tl.store(ctr_ptr + slot * 3 + 1, cy, mask=live)
    tl.store(ctr_ptr + slot * 3 + 2, tl.where(valid, label, 0).to(tl.int32), mask=live)
    return x0, x1, y0, y1


@triton.jit
def draw_kernel(
    win_ptr,
    ctr_ptr,
    coef_ptr,
    heat_ptr,
    boxes_ptr,
    area_ptr,
    scale_ptr,
    target_ptr,
    weight_ptr,
    slots,
    num_classes,
    height,
    width,
    plane,
    GAUSSIAN: tl.constexpr,
    BOX_PLANES: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
):
    """GAUSSIAN(coef_ptr, s, dx, dy) is the op's Gaussian of slot s at offset (dx, dy).
    boxes, area, scale, target and weight are read and written only with BOX_PLANES:
    reg_weight is G * scale of the pixel's smallest-area box, box_target its box."""
    b = tl.program_id(0)
    ty0 = tl.program_id(1) * TILE_H
    tx0 = tl.program_id(2) * TILE_W
    ys = ty0 + tl.arange(0, TILE_H)[:, None]
    xs = tx0 + tl.arange(0, TILE_W)[None, :]
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
            dx = (xs - tl.load(ctr_ptr + s * 3)).to(tl.float32)
            dy = (ys - tl.load(ctr_ptr + s * 3 + 1)).to(tl.float32)
            lab = tl.load(ctr_ptr + s * 3 + 2)
            g = GAUSSIAN(coef_ptr, s, dx, dy)
            hit = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
            hp = heat_ptr + (b * num_classes + lab).to(tl.int64) * plane + pix
            old = tl.load(hp, mask=hit, other=0.0)
            tl.store(hp, tl.maximum(old, g.to(old.dtype)), mask=hit)
            if BOX_PLANES:
                area = tl.load(area_ptr + s)
                better = hit & (area < best_area)
                best_area = tl.where(better, area, best_area)
                best_j = tl.where(better, j, best_j)
                best_g = tl.where(better, g, best_g)
    if BOX_PLANES:
        inside = (ys < height) & (xs < width)
        has = inside & (best_j >= 0)
        sb = b.to(tl.int64) * slots + tl.maximum(best_j, 0)
        for k in tl.static_range(4):
            v = tl.load(boxes_ptr + sb * 4 + k, mask=has, other=-1.0)
            tl.store(target_ptr + (b * 4 + k).to(tl.int64) * plane + pix, v, mask=inside)
        scale = tl.load(scale_ptr + sb, mask=has, other=0.0)
        out = (best_g * scale).to(weight_ptr.dtype.element_ty)
        tl.store(weight_ptr + b.to(tl.int64) * plane + pix, out, mask=inside)


def window_records(total: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty win [total, 4] and ctr [total, 3] int32 for a box pass to fill."""
    win = torch.empty((total, 4), dtype=torch.int32, device=device)
    ctr = torch.empty((total, 3), dtype=torch.int32, device=device)
    return win, ctr


def draw(win, ctr, coef, heat, slots, gaussian, box_planes=None):
    """Runs draw_kernel over heat [B, C, H, W] (zeros on entry) for records of `slots` box
    slots per image; box_planes is (boxes, area, scale, box_target, reg_weight) or None."""
    batch, num_classes, out_h, out_w = heat.shape
    boxes, area, scale, target, weight = box_planes if box_planes is not None else (heat, coef, coef, heat, heat)
    draw_kernel[(batch, triton.cdiv(out_h, TILE_H), triton.cdiv(out_w, TILE_W))](
        win, ctr, coef, heat, boxes, area, scale, target, weight,
        slots, num_classes, out_h, out_w, out_h * out_w,
        GAUSSIAN=gaussian, BOX_PLANES=box_planes is not None, TILE_H=TILE_H, TILE_W=TILE_W,
    )  # fmt: skip
