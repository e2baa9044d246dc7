"""FCOS training targets in Triton (conventions: dets/ops/fcos_targets.py).

One launch per pyramid level, one program per (image, block of the level's locations); each
lane walks the image's boxes and keeps the smallest-area candidate (strict <, so equal areas
keep the lower index). float32 with IEEE division and square root, so decisions match the
CPU kernel and the reference.
"""

import torch
import triton
import triton.language as tl

BLOCK = 128


@triton.jit
def _fcos_level_kernel(
    boxes_ptr,
    labels_ptr,
    num_ptr,
    out_labels_ptr,
    reg_ptr,
    ctr_ptr,
    slots,
    total,
    start,
    count,
    width,
    stride,
    half,
    lo,
    hi,
    SAMPLE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(1)
    pos = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pos < count
    x = (stride // 2 + (pos % width) * stride).to(tl.float32)
    y = (stride // 2 + (pos // width) * stride).to(tl.float32)
    n = tl.load(num_ptr + b)
    best = tl.full([BLOCK], -1, tl.int32)
    best_area = tl.full([BLOCK], 0.0, tl.float32)
    bl = tl.full([BLOCK], 0.0, tl.float32)
    bt = tl.full([BLOCK], 0.0, tl.float32)
    br = tl.full([BLOCK], 0.0, tl.float32)
    bb = tl.full([BLOCK], 0.0, tl.float32)
    base = boxes_ptr + b.to(tl.int64) * slots * 4
    for j in range(0, slots):
        x1 = tl.load(base + j * 4).to(tl.float32)
        y1 = tl.load(base + j * 4 + 1).to(tl.float32)
        x2 = tl.load(base + j * 4 + 2).to(tl.float32)
        y2 = tl.load(base + j * 4 + 3).to(tl.float32)
        # v - v is 0 only for finite v.
        finite = ((x1 - x1) + (y1 - y1) + (x2 - x2) + (y2 - y2)) == 0.0
        dl = x - x1
        dt = y - y1
        dr = x2 - x
        db = y2 - y
        if SAMPLE:
            cx = (x1 + x2) * 0.5
            cy = (y1 + y2) * 0.5
            sx1 = tl.where(cx - half > x1, cx - half, x1)
            sy1 = tl.where(cy - half > y1, cy - half, y1)
            sx2 = tl.where(cx + half > x2, x2, cx + half)
            sy2 = tl.where(cy + half > y2, y2, cy + half)
            inside = (x - sx1 > 0.0) & (y - sy1 > 0.0) & (sx2 - x > 0.0) & (sy2 - y > 0.0)
        else:
            inside = (dl > 0.0) & (dt > 0.0) & (dr > 0.0) & (db > 0.0)
        largest = tl.maximum(tl.maximum(dl, dr), tl.maximum(dt, db))
        area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
        take = (j < n) & finite & inside & (largest >= lo) & (largest <= hi) & ((best < 0) | (area < best_area))
        best = tl.where(take, j, best)
        best_area = tl.where(take, area, best_area)
        bl = tl.where(take, dl, bl)
        bt = tl.where(take, dt, bt)
        br = tl.where(take, dr, br)
        bb = tl.where(take, db, bb)
    hit = best >= 0
    label = tl.load(labels_ptr + b.to(tl.int64) * slots + tl.where(hit, best, 0), mask=live & hit, other=-1)
    h = tl.math.div_rn(tl.minimum(bl, br), tl.where(hit, tl.maximum(bl, br), 1.0))
    v = tl.math.div_rn(tl.minimum(bt, bb), tl.where(hit, tl.maximum(bt, bb), 1.0))
    ctr = tl.where(hit, tl.sqrt_rn(h * v), 0.0)
    out = b.to(tl.int64) * total + start + pos
    tl.store(out_labels_ptr + out, tl.where(hit, label, -1), mask=live)
    tl.store(reg_ptr + out * 4, bl, mask=live)
    tl.store(reg_ptr + out * 4 + 1, bt, mask=live)
    tl.store(reg_ptr + out * 4 + 2, br, mask=live)
    tl.store(reg_ptr + out * 4 + 3, bb, mask=live)
    tl.store(ctr_ptr + out, ctr, mask=live)


def fcos_targets(boxes, labels, num_boxes, heights, widths, strides, range_lo, range_hi, radius):
    """boxes [B, M, 4] contiguous, labels [B, M] int64, num_boxes [B] int64 (validated)."""
    batch, slots = boxes.shape[:2]
    total = sum(h * w for h, w in zip(heights, widths, strict=True))
    out_labels = torch.empty((batch, total), dtype=torch.int64, device=boxes.device)
    reg = torch.empty((batch, total, 4), dtype=boxes.dtype, device=boxes.device)
    ctr = torch.empty((batch, total), dtype=boxes.dtype, device=boxes.device)
    start = 0
    for h, w, s, lo, hi in zip(heights, widths, strides, range_lo, range_hi, strict=True):
        count = h * w
        if count > 0 and batch > 0:
            grid = (triton.cdiv(count, BLOCK), batch)
            _fcos_level_kernel[grid](
                boxes,
                labels,
                num_boxes,
                out_labels,
                reg,
                ctr,
                slots,
                total,
                start,
                count,
                w,
                s,
                float(radius * s),
                float(lo),
                float(hi),
                SAMPLE=radius > 0,
                BLOCK=BLOCK,
            )
        start += count
    return out_labels, reg, ctr
