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
_SUM = tl.standard._sum_combine


@triton.jit
def unpack_key(key):
    """(flat index, is a peak) of a key; index 0 for padding."""
    valid = key != -9223372036854775808
    index = 0xFFFFFFFF - (key & 0xFFFFFFFF)
    return tl.where(valid, index, 0), valid


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
