"""CenterNet decoding in Triton: peaks and top-k (``_peaks``), then one program per BLOCK
output slots reads scores, sizes and offsets and writes the boxes."""

import torch
import triton
import triton.language as tl

from ._peaks import top_peak_keys, unpack_key

BLOCK = 128


@triton.jit
def _centernet_boxes_kernel(
    keys_ptr,
    heat_ptr,
    wh_ptr,
    offset_ptr,
    boxes_ptr,
    scores_ptr,
    labels_ptr,
    total,
    k,
    per_image,
    plane,
    width,
    wh_stride_b,
    wh_stride_c,
    wh_stride_y,
    wh_stride_x,
    off_stride_b,
    off_stride_c,
    off_stride_y,
    off_stride_x,
    down_ratio,
    HAS_OFFSET: tl.constexpr,
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
    cx = x.to(tl.float32)
    cy = y.to(tl.float32)
    if HAS_OFFSET:
        shift = offset_ptr + b * off_stride_b + y * off_stride_y + x * off_stride_x
        cx = cx + tl.load(shift, mask=valid, other=0.0).to(tl.float32)
        cy = cy + tl.load(shift + off_stride_c, mask=valid, other=0.0).to(tl.float32)
    size = wh_ptr + b * wh_stride_b + y * wh_stride_y + x * wh_stride_x
    half_w = tl.load(size, mask=valid, other=0.0).to(tl.float32) * 0.5
    half_h = tl.load(size + wh_stride_c, mask=valid, other=0.0).to(tl.float32) * 0.5
    out_ty = boxes_ptr.dtype.element_ty
    tl.store(boxes_ptr + 4 * slot, tl.where(valid, (cx - half_w) * down_ratio, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 1, tl.where(valid, (cy - half_h) * down_ratio, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 2, tl.where(valid, (cx + half_w) * down_ratio, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 3, tl.where(valid, (cy + half_h) * down_ratio, 0.0).to(out_ty), mask=inside)
    tl.store(scores_ptr + slot, score, mask=inside)
    tl.store(labels_ptr + slot, tl.where(valid, index // plane, -1), mask=inside)


def centernet_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, offset: torch.Tensor | None, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    heatmap = heatmap.contiguous()
    b, c, h, w = heatmap.shape
    keys = top_peak_keys(heatmap, k)
    boxes = heatmap.new_empty((b, k, 4))
    scores = heatmap.new_empty((b, k))
    labels = torch.empty((b, k), dtype=torch.int64, device=heatmap.device)
    total = b * k
    has_offset = offset is not None
    shift = offset if has_offset else wh
    _centernet_boxes_kernel[(triton.cdiv(total, BLOCK),)](
        keys,
        heatmap,
        wh,
        shift,
        boxes,
        scores,
        labels,
        total,
        k,
        c * h * w,
        h * w,
        w,
        *wh.stride(),
        *shift.stride(),
        down_ratio,
        HAS_OFFSET=has_offset,
        BLOCK=BLOCK,
    )
    return boxes, scores, labels
