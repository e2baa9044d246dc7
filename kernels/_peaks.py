"""Peak finding and top-k over a [B, C, H, W] heatmap, shared by the decoders.

Every value becomes one int64 key: the float32 score mapped to an order-preserving int32
in the high half and 0xFFFFFFFF - (flat index) in the low half, so larger keys rank first
and equal scores rank by increasing index; non-peaks get PAD_KEY (the smallest int64).
Keys are unique, hence any top-k returns them in one order on every device.

Stage 1 (one program per BLOCK values of an image): the 3x3 peak test and the keys; when
the block holds more than KEEP peaks, a bitwise search finds its KEEP-th best key (64 masked
counts); the KEEP best keys are written out, unordered. The heatmap is read once and at
most KEEP/BLOCK of it moves on. Stage 2: ``torch.topk`` over each image's surviving keys.

Sums go through the core builtins ``tl.reduce``/``tl.associative_scan`` with triton's own
``_sum_combine``, not through ``tl.sum``/``tl.cumsum``/``tl.sort``: those are ``@jit``
functions of triton.language, which the interpreter cannot call when triton was imported
before ``TRITON_INTERPRET`` was set (torch imports it), while the interpreter runs
``_sum_combine`` reductions and scans as numpy sums (a local combine function would be
called once per element there).
"""

import torch
import triton
import triton.language as tl

PAD_KEY = -(2**63)
BLOCK = 1024
DECODE_BLOCK = 128
_SUM = tl.standard._sum_combine


@triton.jit
def unpack_key(key):
    """(flat index, is a peak) of a key; index 0 for padding."""
    valid = key != -9223372036854775808
    index = 0xFFFFFFFF - (key & 0xFFFFFFFF)
    return tl.where(valid, index, 0), valid


@triton.jit
def decode_boxes_kernel(
    keys_ptr,
    heat_ptr,
    boxes_ptr,
    scores_ptr,
    labels_ptr,
    total,
    k,
    per_image,
    plane,
    width,
    map_ptr,
    map_stride_b,
    map_stride_c,
    map_stride_y,
    map_stride_x,
    extra_ptr,
    extra_stride_b,
    extra_stride_c,
    extra_stride_y,
    extra_stride_x,
    down_ratio,
    BOX: tl.constexpr,
    HAS_EXTRA: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One lane per [B, k] output slot of a decoder, from the keys of top_peak_keys.
    Padding gets box 0, score 0 and label -1; a peak's score and class come from its key,
    and BOX(at, stride_c, extra_at, extra_stride_c, x, y, valid, down_ratio, HAS_EXTRA)
    gives its (x1, y1, x2, y2) in float32 from the decoder's regression map (and the
    optional second one, `extra`) read at the peak: `at` points at channel 0 there."""
    slot = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = slot < total
    key = tl.load(keys_ptr + slot, mask=inside, other=-9223372036854775808)
    index, valid = unpack_key(key)
    b = slot // k
    score = tl.load(heat_ptr + b * per_image + index, mask=valid, other=0.0)
    pos = index % plane
    y = pos // width
    x = pos % width
    at = map_ptr + b * map_stride_b + y * map_stride_y + x * map_stride_x
    extra_at = extra_ptr + b * extra_stride_b + y * extra_stride_y + x * extra_stride_x
    x1, y1, x2, y2 = BOX(at, map_stride_c, extra_at, extra_stride_c, x, y, valid, down_ratio, HAS_EXTRA)
    out_ty = boxes_ptr.dtype.element_ty
    tl.store(boxes_ptr + 4 * slot, tl.where(valid, x1, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 1, tl.where(valid, y1, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 2, tl.where(valid, x2, 0.0).to(out_ty), mask=inside)
    tl.store(boxes_ptr + 4 * slot + 3, tl.where(valid, y2, 0.0).to(out_ty), mask=inside)
    tl.store(scores_ptr + slot, score, mask=inside)
    tl.store(labels_ptr + slot, tl.where(valid, index // plane, -1), mask=inside)


@triton.jit
def _block_top_keys_kernel(
    heat_ptr, keys_ptr, per_image, plane, height, width, chunks, BLOCK: tl.constexpr, KEEP: tl.constexpr
):
    pid = tl.program_id(0).to(tl.int64)
    b = pid // chunks
    chunk = pid % chunks
    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    inside = offs < per_image
    image = heat_ptr + b * per_image
    v = tl.load(image + offs, mask=inside, other=0.0).to(tl.float32)
    pos = offs % plane
    y = pos // width
    x = pos % width
    peak = inside & (v == v)
    for dy in tl.static_range(3):
        for dx in tl.static_range(3):
            ny = y + (dy - 1)
            nx = x + (dx - 1)
            ok = inside & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            n = tl.load(image + offs + (dy - 1) * width + (dx - 1), mask=ok, other=float("-inf")).to(tl.float32)
            peak = peak & ~(n > v)
    # -0.0 and 0.0 are equal scores: give them one key so the index breaks the tie.
    v = tl.where(v == 0.0, 0.0, v)
    bits = v.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    key = (ordered.to(tl.int64) << 32) | (0xFFFFFFFF - offs)
    key = tl.where(peak, key, -9223372036854775808)

    # Largest threshold with at least KEEP peaks at or above it, on the keys read as
    # unsigned (sign bit flipped) so the search can build it bit by bit from the top.
    unsigned = key.to(tl.uint64, bitcast=True) ^ 0x8000000000000000
    threshold = tl.full((), 0, tl.uint64)
    if tl.reduce(peak.to(tl.int32), 0, _SUM) > KEEP:
        bit = tl.full((), 0x8000000000000000, tl.uint64)
        for _ in range(64):
            trial = threshold | bit
            count = tl.reduce((peak & (unsigned >= trial)).to(tl.int32), 0, _SUM)
            threshold = tl.where(count >= KEEP, trial, threshold)
            bit = bit >> 1
    chosen = peak & (unsigned >= threshold)
    # Chosen keys first, then the rest (non-peaks: padding) to fill KEEP slots.
    first = tl.associative_scan(chosen.to(tl.int32), 0, _SUM)
    rest = tl.associative_scan((~chosen).to(tl.int32), 0, _SUM)
    n_chosen = tl.reduce(chosen.to(tl.int32), 0, _SUM)
    slot = tl.where(chosen, first - 1, n_chosen + rest - 1)
    tl.store(keys_ptr + pid * KEEP + slot, key, mask=slot < KEEP)


def top_peak_keys(heatmap: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [B, k] keys of the k best peaks of each image, best first, PAD_KEY padded."""
    heatmap = heatmap.contiguous()
    b, c, h, w = heatmap.shape
    per_image = c * h * w
    keep = min(triton.next_power_of_2(k), BLOCK)
    chunks = triton.cdiv(per_image, BLOCK)
    keys = torch.empty((b, chunks * keep), dtype=torch.int64, device=heatmap.device)
    _block_top_keys_kernel[(b * chunks,)](heatmap, keys, per_image, h * w, h, w, chunks, BLOCK=BLOCK, KEEP=keep)
    taken = min(k, keys.shape[1])
    top = torch.topk(keys, taken, dim=1, sorted=True).values
    if taken < k:
        top = torch.cat([top, top.new_full((b, k - taken), PAD_KEY)], dim=1)
    return top


def decode_peaks(heatmap: torch.Tensor, k: int, box, down_ratio: float, reg_map: torch.Tensor, extra=None):
    """The decoders' common launcher: boxes [B, k, 4], scores [B, k] and labels [B, k] int64
    of the k best peaks of every image, the boxes from the jit function `box` (see
    decode_boxes_kernel) reading `reg_map` and the optional `extra` ([B, *, H, W] each)."""
    heatmap = heatmap.contiguous()
    b, c, h, w = heatmap.shape
    keys = top_peak_keys(heatmap, k)
    boxes = heatmap.new_empty((b, k, 4))
    scores = heatmap.new_empty((b, k))
    labels = torch.empty((b, k), dtype=torch.int64, device=heatmap.device)
    total = b * k
    second = reg_map if extra is None else extra
    decode_boxes_kernel[(triton.cdiv(total, DECODE_BLOCK),)](
        keys, heatmap, boxes, scores, labels, total, k, c * h * w, h * w, w,
        reg_map, *reg_map.stride(), second, *second.stride(), down_ratio,
        BOX=box, HAS_EXTRA=extra is not None, BLOCK=DECODE_BLOCK,
    )  # fmt: skip
    return boxes, scores, labels
