"""Helpers shared by the Triton kernels of the NMS family."""

import numpy as np
import torch
import triton
import triton.language as tl

# Boxes per mask word (bits of an int64) and per tile side.
TILE = 64


def lower_threshold_f32(threshold: float) -> float:
    """The largest float32 t <= threshold: for float32 v, (v > t) == (v > threshold)."""
    t = np.float32(threshold)
    if float(t) > threshold:
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def upper_threshold_f32(threshold: float) -> float:
    """The smallest float32 t >= threshold: for float32 v, (v < t) == (v < threshold)."""
    t = np.float32(threshold)
    if float(t) < threshold:
        t = np.nextafter(t, np.float32(np.inf))
    return float(t)


@triton.jit
def box_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2):
    """IoU of broadcast boxes a and b in torchvision's order of operations. The launchers
    turn off FMA contraction and the division is correctly rounded, so float32 results
    match the CPU kernels bit for bit."""
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    w = tl.maximum(tl.minimum(ax2, bx2) - tl.maximum(ax1, bx1), 0.0)
    h = tl.maximum(tl.minimum(ay2, by2) - tl.maximum(ay1, by1), 0.0)
    inter = w * h
    return tl.math.div_rn(inter, area_a + area_b - inter)


# Reductions. The kernels avoid tl.sum/tl.max/tl.zeros: those are jit functions of
# triton.language, which the interpreter cannot call when triton was first imported in
# compiled mode (as it is once torch has loaded it). tl.reduce is a builtin; given
# triton's own combine functions it also takes the interpreter's fast numpy path.
SUM = tl.standard._sum_combine
MAX = tl.standard._elementwise_max
MIN = tl.standard._elementwise_min


@triton.jit
def bitwise_or(a, b):
    return a | b


@triton.jit
def iou_mask_kernel(
    boxes_ptr,  # [n, 4] in visit order, contiguous
    seg_end_ptr,  # int64 [n]: end of each box's category range (n for plain NMS)
    mask_ptr,  # int64 [n, n_words]; only words at column block >= row block are written
    n,
    n_words,
    threshold,
    TILE: tl.constexpr,
):
    """Bit j of mask[i, w] says box 64 w + j has IoU > threshold with box i (j > i, same
    category). Tiles below the diagonal are skipped; tiles past every row's category range
    are written as zeros without computing IoUs."""
    rb = tl.program_id(0)
    cb = tl.program_id(1)
    if cb < rb:
        return
    lane = tl.arange(0, TILE)
    rows = rb.to(tl.int64) * TILE + lane
    cols = cb.to(tl.int64) * TILE + lane
    row_ok = rows < n
    seg_end = tl.load(seg_end_ptr + rows, mask=row_ok, other=0)
    out = mask_ptr + rows * n_words + cb
    if cb.to(tl.int64) * TILE >= tl.reduce(seg_end, 0, MAX):
        tl.store(out, tl.full([TILE], 0, tl.int64), mask=row_ok)
        return
    col_ok = cols < n
    rx1 = tl.load(boxes_ptr + rows * 4 + 0, mask=row_ok, other=0.0).to(tl.float32)
    ry1 = tl.load(boxes_ptr + rows * 4 + 1, mask=row_ok, other=0.0).to(tl.float32)
    rx2 = tl.load(boxes_ptr + rows * 4 + 2, mask=row_ok, other=0.0).to(tl.float32)
    ry2 = tl.load(boxes_ptr + rows * 4 + 3, mask=row_ok, other=0.0).to(tl.float32)
    cx1 = tl.load(boxes_ptr + cols * 4 + 0, mask=col_ok, other=0.0).to(tl.float32)
    cy1 = tl.load(boxes_ptr + cols * 4 + 1, mask=col_ok, other=0.0).to(tl.float32)
    cx2 = tl.load(boxes_ptr + cols * 4 + 2, mask=col_ok, other=0.0).to(tl.float32)
    cy2 = tl.load(boxes_ptr + cols * 4 + 3, mask=col_ok, other=0.0).to(tl.float32)
    iou = box_iou(
        rx1[:, None], ry1[:, None], rx2[:, None], ry2[:, None], cx1[None, :], cy1[None, :], cx2[None, :], cy2[None, :]
    )
    hit = (iou > threshold) & (cols[None, :] > rows[:, None]) & (cols[None, :] < seg_end[:, None])
    bits = tl.where(hit, tl.full([1, TILE], 1, tl.int64) << lane[None, :].to(tl.int64), 0)
    # Every column owns a distinct bit, so the sum is the OR (bit 63 wraps correctly).
    tl.store(out, tl.reduce(bits, 1, SUM), mask=row_ok)


@triton.jit
def unwrap_kernel(
    mask_ptr,  # int64 [n, n_words] from iou_mask_kernel
    seg_end_ptr,  # int64 [n], as for iou_mask_kernel
    removed_ptr,  # int64 [n_words], zeros: scratch for the removed-box bitset
    keep_ptr,  # bool [n] out: whether the box at each visit position is kept
    n,
    n_words,
    TILE: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """The greedy pass over the mask, on the device, in one program. Each 64-box block is
    resolved from its diagonal tile held in registers (one scalar step per box, no memory
    round trip); the block's kept rows are then OR-ed into the removed words of later blocks
    in CHUNK-word vector steps, up to the end of the block's last category range."""
    lane = tl.arange(0, TILE).to(tl.int64)
    one = tl.full([], 1, tl.int64)
    for rb in range(0, n_words):
        # rb * TILE < n fits int32; the int64 lane makes every product below int64.
        rows = rb * TILE + lane
        row_ok = rows < n
        diag = tl.load(mask_ptr + rows * n_words + rb, mask=row_ok, other=0)
        removed = tl.load(removed_ptr + rb)
        kept_bits = tl.full([], 0, tl.int64)
        for i in range(0, TILE):
            word = tl.reduce(tl.where(lane == i, diag, 0), 0, SUM)
            alive = ((removed >> i) & 1) == 0
            removed = tl.where(alive, removed | word, removed)
            kept_bits = tl.where(alive, kept_bits | (one << i), kept_bits)
        kept = ((kept_bits >> lane) & 1) != 0
        tl.store(keep_ptr + rows, kept & row_ok, mask=row_ok)
        take = kept & row_ok
        last = tl.minimum(rb * TILE + TILE, n) - 1
        end_word = (tl.load(seg_end_ptr + last) + TILE - 1) // TILE
        for start in range(rb + 1, end_word, CHUNK):
            words = start + tl.arange(0, CHUNK)
            ok = words < end_word
            tile = tl.load(
                mask_ptr + rows[:, None] * n_words + words[None, :], mask=take[:, None] & ok[None, :], other=0
            )
            merged = tl.reduce(tile, 0, bitwise_or)
            old = tl.load(removed_ptr + words, mask=ok, other=0)
            tl.store(removed_ptr + words, old | merged, mask=ok)
        # The next block reads words other threads of this program wrote.
        tl.debug_barrier()


def greedy_keep(sorted_boxes: torch.Tensor, seg_end: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """bool [n]: which boxes of `sorted_boxes` ([n, 4], contiguous, visit order) greedy NMS
    keeps, boxes only suppressing later boxes before their `seg_end` (int64 [n]).
    The mask takes n * ceil(n / 64) * 8 bytes."""
    n = sorted_boxes.shape[0]
    n_words = triton.cdiv(n, TILE)
    device = sorted_boxes.device
    mask = torch.empty((n, n_words), dtype=torch.int64, device=device)
    removed = torch.zeros((n_words,), dtype=torch.int64, device=device)
    keep = torch.empty((n,), dtype=torch.bool, device=device)
    thr = lower_threshold_f32(iou_threshold)
    iou_mask_kernel[(n_words, n_words)](
        sorted_boxes, seg_end, mask, n, n_words, thr, TILE=TILE, num_warps=4, enable_fp_fusion=False
    )
    # One warp: the 64-step diagonal loop then reduces within the warp (no barriers).
    unwrap_kernel[(1,)](mask, seg_end, removed, keep, n, n_words, TILE=TILE, CHUNK=16, num_warps=1)
    return keep
