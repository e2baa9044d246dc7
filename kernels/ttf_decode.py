"""TTFNet decoding in Triton: peaks and top-k (``_peaks``), then one program per BLOCK
output slots reads scores and distances and writes the boxes."""

import torch
import triton
import triton.language as tl

from ._peaks import top_peak_keys, unpack_key

BLOCK = 128


@triton.jit
def _ttf_boxes_kernel(
    keys_ptr,
    heat_ptr,
    wh_ptr,
    boxes_ptr,
    scores_ptr,
    labels_ptr,
    total,
    k,
    per_image,
    plane,
    width,
    stride_b,
    stride_c,
    stride_y,
    stride_x,
    down_ratio,
    BLOCK: tl.constexpr,
):
    slot = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = slot < total
    key = tl.load(keys_ptr + slot, mask=inside, other=-9223372036854775808)
    index, valid = unpack_key(key)
    b = slot // k
    score = tl.load(heat_ptr + b * per_image + index, mask=valid, other=0.0)
    pos = index % plane
    y = pos // width
    x = pos % width
    at = wh_ptr + b * stride_b + y * stride_y + x * stride_x
    left = tl.load(at, mask=valid, other=0.0).to(tl.float32)
    top = tl.load(at + stride_c, mask=valid, other=0.0).to(tl.float32)
    right = tl.load(at + 2 * stride_c, mask=valid, other=0.0).to(tl.float32)
    bottom = tl.load(at + 3 * stride_c, mask=valid, other=0.0).to(tl.float32)
    cx = x.to(tl.float32) * down_ratio
    cy = y.to(tl.float32) * down_ratio
    out_ty = boxes_ptr.dtype.element_ty
    tl.store(boxes_ptr + 4 * slot, tl.where(valid, cx - left, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 1, tl.where(valid, cy - top, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 2, tl.where(valid, cx + right, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 3, tl.where(valid, cy + bottom, 0.0).to(out_ty), mask=inside)
    tl.store(scores_ptr + slot, score, mask=inside)
    tl.store(labels_ptr + slot, tl.where(valid, index // plane, -1), mask=inside)


def ttf_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    heatmap = heatmap.contiguous()
    b, c, h, w = heatmap.shape
    keys = top_peak_keys(heatmap, k)
    boxes = heatmap.new_empty((b, k, 4))
    scores = heatmap.new_empty((b, k))
    labels = torch.empty((b, k), dtype=torch.int64, device=heatmap.device)
    total = b * k
    _ttf_boxes_kernel[(triton.cdiv(total, BLOCK),)](
        keys, heatmap, wh, boxes, scores, labels, total, k, c * h * w, h * w, w, *wh.stride(), down_ratio, BLOCK=BLOCK
    )
    return boxes, scores, labels
