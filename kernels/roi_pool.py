"""RoIPool in Triton (semantics: dets.ops.roi_pool).

One program pools one RoI for a block of bins x a block of channels. The feature map is read
channels-last, so each pixel of a bin is one contiguous load across the channel block; the
[bins, channels] tile keeps a running maximum and the plane offset of its first holder. The
backward scatters through that argmax with atomics into a float32 channels-last buffer
(coalesced across channels), cast to the input's dtype at the end.
"""

import torch
import triton
import triton.language as tl

BLOCK_C = 32
MAX_BLOCK_P = 64
COORD_LIMIT = 1099511627776.0  # 2^40, see dets.ops.reference.roi_pool
LOWEST = -3.4028234663852886e38  # -FLT_MAX


@triton.jit
def _round_half_away(v):
    a = tl.abs(v)
    f = tl.floor(a)
    r = f + tl.where(a - f >= 0.5, 1.0, 0.0)
    return tl.where(v < 0, -r, r)


@triton.jit
def _corner(v, finite, limit):
    r = tl.minimum(tl.maximum(_round_half_away(v), -limit), limit)
    return tl.where(finite, r, 0.0).to(tl.int64)


@triton.jit
def _bin_bounds(p, bin_size, start, limit_px):
    lo = tl.floor(p.to(tl.float32) * bin_size).to(tl.int64) + start
    hi = tl.ceil((p + 1).to(tl.float32) * bin_size).to(tl.int64) + start
    return tl.minimum(tl.maximum(lo, 0), limit_px), tl.minimum(tl.maximum(hi, 0), limit_px)


# Pooled sizes of 1 must not become compile-time constants: _bin_bounds converts them.
@triton.jit(do_not_specialize=["PH", "PW"])
def _roi_pool_forward_kernel(
    x_ptr,  # [N, H, W, C] contiguous
    rois_ptr,  # [K, 5] contiguous
    out_ptr,  # [K, C, PH, PW]
    arg_ptr,  # [K, C, PH, PW] int32 (unused without WITH_ARGMAX)
    scale,
    C,
    H,
    W,
    PH,
    PW,
    WITH_ARGMAX: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    k = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    c_in = c < C
    p_in = p < PH * PW
    ph = p // PW
    pw = p % PW

    roi = rois_ptr + k * 5
    batch = tl.load(roi).to(tl.int64)
    sx1 = tl.load(roi + 1).to(tl.float32) * scale
    sy1 = tl.load(roi + 2).to(tl.float32) * scale
    sx2 = tl.load(roi + 3).to(tl.float32) * scale
    sy2 = tl.load(roi + 4).to(tl.float32) * scale
    # v - v is 0 exactly when v is finite (NaN otherwise), so this sum is 0 iff all four are.
    valid = ((sx1 - sx1) + (sy1 - sy1) + (sx2 - sx2) + (sy2 - sy2)) == 0
    x1 = _corner(sx1, valid, COORD_LIMIT)
    y1 = _corner(sy1, valid, COORD_LIMIT)
    x2 = _corner(sx2, valid, COORD_LIMIT)
    y2 = _corner(sy2, valid, COORD_LIMIT)
    roi_w = tl.maximum(x2 - x1 + 1, 1)
    roi_h = tl.maximum(y2 - y1 + 1, 1)
    bin_h = tl.math.div_rn(roi_h.to(tl.float32), PH.to(tl.float32))
    bin_w = tl.math.div_rn(roi_w.to(tl.float32), PW.to(tl.float32))
    h0, h1 = _bin_bounds(ph, bin_h, y1, H)
    w0, w1 = _bin_bounds(pw, bin_w, x1, W)
    # (A scalar mask is folded in with where(): the interpreter cannot '&' it with a vector.)
    live = tl.where(valid, p_in & (h1 > h0) & (w1 > w0), 0) != 0
    h1 = tl.where(live, h1, h0)
    w1 = tl.where(live, w1, w0)
    # ceil((p + 1) b) - floor(p b) <= ceil(b) + 1: a bound on every bin's extent, as a
    # scalar (no reduction over the bins needed).
    span_h = tl.where(valid, tl.minimum(tl.ceil(bin_h).to(tl.int64) + 1, H), 0)
    span_w = tl.where(valid, tl.minimum(tl.ceil(bin_w).to(tl.int64) + 1, W), 0)

    best = tl.full((BLOCK_P, BLOCK_C), LOWEST, tl.float32)
    where = tl.full((BLOCK_P, BLOCK_C), -1, tl.int32)
    x_n = x_ptr + batch * H * W * C
    c_mask = c_in[None, :]
    # Row-major over each bin with a strict '>': the first maximum wins; NaN never does.
    for dh in range(0, span_h):
        h = h0 + dh
        for dw in range(0, span_w):
            w = w0 + dw
            inside = (h < h1) & (w < w1)
            pixel = h * W + w
            ptrs = x_n + pixel[:, None] * C + c[None, :]
            v = tl.load(ptrs, mask=inside[:, None] & c_mask, other=float("-inf")).to(tl.float32)
            greater = v > best
            best = tl.where(greater, v, best)
            where = tl.where(greater, pixel.to(tl.int32)[:, None], where)
    best = tl.where(live[:, None], best, 0.0)
    offs = k * C * PH * PW + c[None, :].to(tl.int64) * (PH * PW) + p[:, None]
    mask = p_in[:, None] & c_mask
    tl.store(out_ptr + offs, best.to(out_ptr.dtype.element_ty), mask=mask)
    if WITH_ARGMAX:
        tl.store(arg_ptr + offs, where, mask=mask)


@triton.jit
def _roi_pool_backward_kernel(
    grad_ptr,  # [K, C, PH, PW], any strides
    rois_ptr,  # [K, 5] contiguous
    arg_ptr,  # [K, C, PH, PW] int32 contiguous
    buf_ptr,  # [N, H, W, C] float32, zeroed
    C,
    HW,
    PH,
    PW,
    gs0,
    gs1,
    gs2,
    gs3,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    k = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = (p < PH * PW)[:, None] & (c < C)[None, :]
    ph = (p // PW).to(tl.int64)
    pw = (p % PW).to(tl.int64)
    batch = tl.load(rois_ptr + k * 5).to(tl.int64)
    c64 = c.to(tl.int64)
    a = tl.load(arg_ptr + k * C * PH * PW + c64[None, :] * (PH * PW) + p[:, None], mask=mask, other=-1)
    g_offs = k * gs0 + c64[None, :] * gs1 + (ph * gs2 + pw * gs3)[:, None]
    g = tl.load(grad_ptr + g_offs, mask=mask, other=0.0).to(tl.float32)
    hit = mask & (a >= 0)
    dst = buf_ptr + (batch * HW + a.to(tl.int64)) * C + c64[None, :]
    tl.atomic_add(dst, g, mask=hit)


def _grid_blocks(channels: int, bins: int) -> tuple[int, int]:
    block_p = min(triton.next_power_of_2(bins), MAX_BLOCK_P)
    return block_p, triton.cdiv(bins, block_p)


def roi_pool_forward(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    with_argmax: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """output [K, C, PH, PW] (input's dtype) and int32 argmax (empty [0] without
    with_argmax) of validated arguments."""
    n, channels, height, width = input.shape
    num_rois = rois.shape[0]
    output = input.new_empty((num_rois, channels, pooled_height, pooled_width))
    argmax = torch.empty(output.shape if with_argmax else (0,), dtype=torch.int32, device=input.device)
    if output.numel() == 0:
        return output, argmax
    x = input.permute(0, 2, 3, 1).contiguous()
    bins = pooled_height * pooled_width
    block_p, p_blocks = _grid_blocks(channels, bins)
    grid = (num_rois, triton.cdiv(channels, BLOCK_C), p_blocks)
    _roi_pool_forward_kernel[grid](
        x,
        rois.contiguous(),
        output,
        argmax if with_argmax else output,
        float(spatial_scale),
        channels,
        height,
        width,
        pooled_height,
        pooled_width,
        WITH_ARGMAX=with_argmax,
        BLOCK_P=block_p,
        BLOCK_C=BLOCK_C,
    )
    return output, argmax


def roi_pool_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    argmax: torch.Tensor,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
) -> torch.Tensor:
    """Gradient [N, C, H, W] (grad's dtype, contiguous) of the pooled output."""
    buf = torch.zeros((batch_size, height, width, channels), dtype=torch.float32, device=grad.device)
    num_rois, _, pooled_height, pooled_width = grad.shape
    if grad.numel() > 0 and buf.numel() > 0:
        bins = pooled_height * pooled_width
        block_p, p_blocks = _grid_blocks(channels, bins)
        grid = (num_rois, triton.cdiv(channels, BLOCK_C), p_blocks)
        _roi_pool_backward_kernel[grid](
            grad,
            rois.contiguous(),
            argmax.contiguous(),
            buf,
            channels,
            height * width,
            pooled_height,
            pooled_width,
            *grad.stride(),
            BLOCK_P=block_p,
            BLOCK_C=BLOCK_C,
        )
    return buf.permute(0, 3, 1, 2).to(grad.dtype).contiguous()
