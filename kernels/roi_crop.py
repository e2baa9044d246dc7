"""RoICrop in Triton: channels are the vector axis.

A program owns one RoI, a block of its output points and a block of channels; the
sampling positions, neighbours and weights of the points are computed once per
program and broadcast over the channel axis of a [BLOCK_C, BLOCK_P] tile. Output
points are the fast axis of the tile, so stores are contiguous. Backward scatters with
atomic adds into a float32 (float64 for float64) buffer. Geometry: dets.ops.roi_crop.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _axis(coord, size):
    """Neighbours and weights along one axis; `ok` is False where no neighbour is in
    the map (also for NaN and inf, whose comparisons fail)."""
    ok = (coord > -1.0) & (coord < size)
    safe = tl.where(ok, coord, 0.0)
    base = tl.floor(safe)
    frac = safe - base
    lo = base.to(tl.int64)
    w_lo = tl.where(lo >= 0, 1.0 - frac, 0.0)
    w_hi = tl.where(lo + 1 <= size - 1, frac, 0.0)
    lo_c = tl.maximum(lo, 0)
    hi_c = tl.minimum(lo + 1, size - 1)
    return ok, lo_c, hi_c, w_lo, w_hi


@triton.jit
def _geometry(rois_ptr, k, p, N, H, W, OH, OW):
    """Flat offsets of the four neighbours and their weights for points `p` of RoI
    `k`, the batch index, and which points are valid (weights are 0 elsewhere)."""
    roi = rois_ptr + k * 5
    bf = tl.load(roi)
    x1 = tl.load(roi + 1)
    y1 = tl.load(roi + 2)
    x2 = tl.load(roi + 3)
    y2 = tl.load(roi + 4)
    b_ok = (bf >= 0.0) & (bf < N)
    b = tl.where(b_ok, bf, 0.0).to(tl.int64)
    P = OH * OW
    valid = tl.where(b_ok, p < P, False)  # a scalar & a block trips the interpreter
    i = (p // OW).to(x1.dtype)
    j = (p % OW).to(x1.dtype)
    x = x1 + j * ((x2 - x1) / tl.maximum(OW - 1, 1).to(x1.dtype))
    y = y1 + i * ((y2 - y1) / tl.maximum(OH - 1, 1).to(x1.dtype))
    x = tl.where(OW == 1, (x1 + x2) / 2, x)
    y = tl.where(OH == 1, (y1 + y2) / 2, y)
    ok_x, x_lo, x_hi, wx_lo, wx_hi = _axis(x, W)
    ok_y, y_lo, y_hi, wy_lo, wy_hi = _axis(y, H)
    valid = valid & ok_x & ok_y
    w00 = tl.where(valid, wy_lo * wx_lo, 0.0)
    w01 = tl.where(valid, wy_lo * wx_hi, 0.0)
    w10 = tl.where(valid, wy_hi * wx_lo, 0.0)
    w11 = tl.where(valid, wy_hi * wx_hi, 0.0)
    o00 = y_lo * W + x_lo
    o01 = y_lo * W + x_hi
    o10 = y_hi * W + x_lo
    o11 = y_hi * W + x_hi
    return b, valid, o00, o01, o10, o11, w00, w01, w10, w11


# Sizes equal to 1 are common (oh or ow == 1, H == 1 maps); keep them runtime values
# rather than compile-time specialisations, one compiled kernel serving all shapes.
_SIZES = ["N", "C", "H", "W", "OH", "OW"]


@triton.jit(do_not_specialize=_SIZES)
def _roi_crop_forward_kernel(
    in_ptr, rois_ptr, out_ptr, N, C, H, W, OH, OW, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr
):
    P = OH * OW
    blocks_p = (P + BLOCK_P - 1) // BLOCK_P
    pid = tl.program_id(0).to(tl.int64)
    k = pid // blocks_p
    p = (pid % blocks_p) * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    b, valid, o00, o01, o10, o11, w00, w01, w10, w11 = _geometry(rois_ptr, k, p, N, H, W, OH, OW)
    c_ok = c < C
    plane = (b * C + c) * H * W
    base = in_ptr + plane[:, None]
    mask = c_ok[:, None] & valid[None, :]
    acc = w00[None, :] * tl.load(base + o00[None, :], mask=mask, other=0.0).to(w00.dtype)
    acc += w01[None, :] * tl.load(base + o01[None, :], mask=mask, other=0.0).to(w00.dtype)
    acc += w10[None, :] * tl.load(base + o10[None, :], mask=mask, other=0.0).to(w00.dtype)
    acc += w11[None, :] * tl.load(base + o11[None, :], mask=mask, other=0.0).to(w00.dtype)
    out = out_ptr + ((k * C + c) * P)[:, None] + p[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=c_ok[:, None] & (p < P)[None, :])


@triton.jit(do_not_specialize=_SIZES)
def _roi_crop_backward_kernel(
    grad_ptr, rois_ptr, gin_ptr, N, C, H, W, OH, OW, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr
):
    P = OH * OW
    blocks_p = (P + BLOCK_P - 1) // BLOCK_P
    pid = tl.program_id(0).to(tl.int64)
    k = pid // blocks_p
    p = (pid % blocks_p) * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    b, valid, o00, o01, o10, o11, w00, w01, w10, w11 = _geometry(rois_ptr, k, p, N, H, W, OH, OW)
    c_ok = c < C
    mask = c_ok[:, None] & valid[None, :]
    g = tl.load(grad_ptr + ((k * C + c) * P)[:, None] + p[None, :], mask=mask, other=0.0)
    g = g.to(gin_ptr.dtype.element_ty)
    base = gin_ptr + ((b * C + c) * H * W)[:, None]
    dtype = gin_ptr.dtype.element_ty
    tl.atomic_add(base + o00[None, :], w00.to(dtype)[None, :] * g, mask=mask)
    tl.atomic_add(base + o01[None, :], w01.to(dtype)[None, :] * g, mask=mask)
    tl.atomic_add(base + o10[None, :], w10.to(dtype)[None, :] * g, mask=mask)
    tl.atomic_add(base + o11[None, :], w11.to(dtype)[None, :] * g, mask=mask)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _scaled_rois(rois: torch.Tensor, spatial_scale: float, dtype: torch.dtype) -> torch.Tensor:
    # Scaling here, in the compute dtype, keeps float64 scales exact (a Triton float
    # argument is float32) and matches the reference's rounding.
    rois = rois.to(dtype)
    return torch.cat([rois[:, :1], rois[:, 1:] * spatial_scale], dim=1).contiguous()


def _blocks(channels: int, points: int, interpreted: bool) -> tuple[int, int]:
    if interpreted:  # few, large programs: the interpreter pays per program
        return min(triton.next_power_of_2(max(channels, 1)), 64), min(triton.next_power_of_2(points), 256)
    block_p = min(max(triton.next_power_of_2(points), 16), 64)
    return min(2048 // block_p, triton.next_power_of_2(max(channels, 1))), block_p


def roi_crop_forward(
    input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, output_height: int, output_width: int
) -> torch.Tensor:
    """input [N, C, H, W], rois [K, 5] -> [K, C, output_height, output_width] (input's dtype)."""
    n, c, h, w = input.shape
    k = rois.shape[0]
    out = input.new_empty((k, c, output_height, output_width))
    if out.numel() == 0:
        return out
    if h == 0 or w == 0:
        return out.zero_()
    input = input.contiguous()
    scaled = _scaled_rois(rois, spatial_scale, _compute_dtype(input.dtype))
    points = output_height * output_width
    block_c, block_p = _blocks(c, points, input.device.type != "cuda")
    grid = (k * triton.cdiv(points, block_p), triton.cdiv(c, block_c))
    _roi_crop_forward_kernel[grid](
        input, scaled, out, n, c, h, w, output_height, output_width, BLOCK_C=block_c, BLOCK_P=block_p
    )
    return out


def roi_crop_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
) -> torch.Tensor:
    """grad [K, C, oh, ow], rois [K, 5] -> input gradient [N, C, H, W] (grad's dtype)."""
    compute = _compute_dtype(grad.dtype)
    buffer = torch.zeros((batch_size, channels, height, width), dtype=compute, device=grad.device)
    if grad.numel() == 0 or buffer.numel() == 0:
        return buffer.to(grad.dtype)
    grad = grad.contiguous()
    k, _, oh, ow = grad.shape
    scaled = _scaled_rois(rois, spatial_scale, compute)
    points = oh * ow
    block_c, block_p = _blocks(channels, points, grad.device.type != "cuda")
    grid = (k * triton.cdiv(points, block_p), triton.cdiv(channels, block_c))
    _roi_crop_backward_kernel[grid](
        grad, scaled, buffer, batch_size, channels, height, width, oh, ow, BLOCK_C=block_c, BLOCK_P=block_p
    )
    return buffer.to(grad.dtype)
