"""Triton Soft-NMS: one program runs the whole selection loop (it is sequential by nature);
each step is one vectorised pass over the boxes that decays, drops and finds the next
selection. Conventions and the selection rule: dets.ops.soft_nms. One sync: the count."""

import torch
import triton
import triton.language as tl

from . import _common

# Key of a dropped box: below the key of every score, -inf included.
DEAD = tl.constexpr(-(1 << 40))


@triton.jit
def score_key(s, alive):
    """int64 keys ordering float32 scores as the selection does (NaN highest, -0 == +0)."""
    bits = s.to(tl.int32, bitcast=True)
    key = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)
    key = tl.where(s == 0.0, 0, key)
    key = tl.where(s != s, 0x7FFFFFFF, key)
    return tl.where(alive, key, DEAD)


@triton.jit
def fold_best(s, alive, offs, n, best, best_key):
    """The running selection (index, key) updated with one block of boxes: the highest key
    wins, the lowest index among equal keys."""
    key = score_key(s, alive)
    top = tl.reduce(key, 0, _common.MAX)
    first = tl.reduce(tl.where(key == top, offs, n), 0, _common.MIN)
    best = tl.where(top > best_key, first, best)
    best_key = tl.where(top > best_key, top, best_key)
    return best, best_key


@triton.jit
def soft_nms_kernel(
    boxes_ptr,  # [n, 4] contiguous
    scores_ptr,  # [n]
    work_ptr,  # float32 [n] scratch: current scores
    alive_ptr,  # int8 [n] scratch
    keep_ptr,  # int64 [n] out, selection order
    kept_scores_ptr,  # float32 [n] out
    count_ptr,  # int64 [1] out
    n,
    iou_threshold,  # float32 just below the threshold (see _common.lower_threshold_f32)
    sigma,
    score_threshold,  # float32 just above the threshold (see _common.upper_threshold_f32)
    METHOD: tl.constexpr,  # 0 hard, 1 linear, 2 gaussian
    BLOCK: tl.constexpr,
):
    lane = tl.arange(0, BLOCK).to(tl.int64)
    best_key = tl.full([], DEAD, tl.int64)
    best = tl.full([], 0, tl.int64)
    for start in range(0, n, BLOCK):
        offs = start + lane
        ok = offs < n
        s = tl.load(scores_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        alive = ok & ~(s < score_threshold)
        tl.store(work_ptr + offs, s, mask=ok)
        tl.store(alive_ptr + offs, alive.to(tl.int8), mask=ok)
        best, best_key = fold_best(s, alive, offs, n, best, best_key)
    tl.debug_barrier()
    step = tl.full([], 0, tl.int64)
    while best_key > DEAD:
        sel = best
        ax1 = tl.load(boxes_ptr + sel * 4 + 0).to(tl.float32)
        ay1 = tl.load(boxes_ptr + sel * 4 + 1).to(tl.float32)
        ax2 = tl.load(boxes_ptr + sel * 4 + 2).to(tl.float32)
        ay2 = tl.load(boxes_ptr + sel * 4 + 3).to(tl.float32)
        tl.store(keep_ptr + step, sel)
        tl.store(kept_scores_ptr + step, tl.load(work_ptr + sel))
        step += 1
        best_key = tl.full([], DEAD, tl.int64)
        best = tl.full([], 0, tl.int64)
        for start in range(0, n, BLOCK):
            offs = start + lane
            ok = offs < n
            alive = (tl.load(alive_ptr + offs, mask=ok, other=0) != 0) & (offs != sel)
            s = tl.load(work_ptr + offs, mask=ok, other=0.0)
            bx1 = tl.load(boxes_ptr + offs * 4 + 0, mask=ok, other=0.0).to(tl.float32)
            by1 = tl.load(boxes_ptr + offs * 4 + 1, mask=ok, other=0.0).to(tl.float32)
            bx2 = tl.load(boxes_ptr + offs * 4 + 2, mask=ok, other=0.0).to(tl.float32)
            by2 = tl.load(boxes_ptr + offs * 4 + 3, mask=ok, other=0.0).to(tl.float32)
            iou = _common.box_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2)
            valid = iou == iou
            over = valid & (iou > iou_threshold)
            if METHOD == 0:
                alive = alive & ~over
            elif METHOD == 1:
                s = tl.where(over, s * (1.0 - iou), s)
            else:
                s = tl.where(valid, s * tl.exp(tl.math.div_rn(-(iou * iou), sigma)), s)
            alive = alive & ~(s < score_threshold)
            tl.store(work_ptr + offs, s, mask=ok & alive)
            tl.store(alive_ptr + offs, alive.to(tl.int8), mask=ok)
            best, best_key = fold_best(s, alive, offs, n, best, best_key)
        # The next step reads scores and flags other threads of this program wrote.
        tl.debug_barrier()
    tl.store(count_ptr, step)


def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    method: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep int64 [K], new_scores [K] in scores' dtype); method 0 hard, 1 linear, 2 gaussian."""
    n = boxes.shape[0]
    device = boxes.device
    boxes = boxes.contiguous()
    scores = scores.contiguous()
    work = torch.empty((n,), dtype=torch.float32, device=device)
    alive = torch.empty((n,), dtype=torch.int8, device=device)
    keep = torch.empty((n,), dtype=torch.int64, device=device)
    kept_scores = torch.empty((n,), dtype=torch.float32, device=device)
    count = torch.zeros((1,), dtype=torch.int64, device=device)
    block = min(1024, max(16, triton.next_power_of_2(n)))
    soft_nms_kernel[(1,)](
        boxes,
        scores,
        work,
        alive,
        keep,
        kept_scores,
        count,
        n,
        _common.lower_threshold_f32(iou_threshold),
        sigma,
        _common.upper_threshold_f32(score_threshold),
        METHOD=method,
        BLOCK=block,
        num_warps=8,
        enable_fp_fusion=False,
    )
    k = int(count.item())
    return keep[:k], kept_scores[:k].to(scores.dtype)
