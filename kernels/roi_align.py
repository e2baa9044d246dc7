"""RoIAlign in Triton, forward and backward (semantics: dets/ops/roi_align.py).

One program per (RoI, block of channels) covers every bin of that RoI: the program's tile is
[bins, channels]. The features are read as NHWC, so each bilinear tap of a bin is a contiguous
run of channels (coalesced); the output tile [channels, bins] of one RoI is a contiguous chunk
of the [K, C, oh, ow] output. The sample grid of a RoI is a per-program scalar loop.

The launchers scale the boxes in float64 and round once to float32 (torchvision's arithmetic)
and mark RoIs with a non-finite corner by a batch index of -1 (empty: output 0, no gradient).
The backward adds into a float32 NHWC buffer with atomics, then casts to the input's dtype.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _axis_taps(start, i, bin_size, grid, size):
    """Taps of the i-th of `grid` samples per bin along an axis of `size` pixels.

    Returns lo, hi, w_lo, w_hi, inside.
    """
    coord = start + (i + 0.5) * bin_size / grid.to(tl.float32)
    inside = (coord >= -1.0) & (coord <= size)
    v = tl.maximum(coord, 0.0)
    lo = v.to(tl.int32)
    edge = lo >= size - 1
    lo = tl.where(edge, size - 1, lo)
    hi = tl.where(edge, size - 1, lo + 1)
    v = tl.where(edge, lo.to(tl.float32), v)
    frac = v - lo.to(tl.float32)
    return lo, hi, 1.0 - frac, frac, inside


@triton.jit
def _bilinear_taps(y_lo, y_hi, wy_lo, wy_hi, x_lo, x_hi, wx_lo, wx_hi, width, channels, c):
    """Offsets [bins, C] into an NHWC image of the four taps of each bin, and their weights [bins]."""
    row_lo = y_lo.to(tl.int64) * width
    row_hi = y_hi.to(tl.int64) * width
    return (
        ((row_lo + x_lo) * channels)[:, None] + c[None, :],
        ((row_lo + x_hi) * channels)[:, None] + c[None, :],
        ((row_hi + x_lo) * channels)[:, None] + c[None, :],
        ((row_hi + x_hi) * channels)[:, None] + c[None, :],
        wy_lo * wx_lo,
        wy_lo * wx_hi,
        wy_hi * wx_lo,
        wy_hi * wx_hi,
    )


@triton.jit
def _roi_grid(box_ptr, k, bins, pooled_h, pooled_w, sampling_ratio, max_grid, ALIGNED: tl.constexpr):
    """Batch index (-1: empty RoI), top-left corner of each bin, bin sizes and sample grid of RoI k."""
    batch = tl.load(box_ptr + k * 5).to(tl.int64)
    x1 = tl.load(box_ptr + k * 5 + 1)
    y1 = tl.load(box_ptr + k * 5 + 2)
    x2 = tl.load(box_ptr + k * 5 + 3)
    y2 = tl.load(box_ptr + k * 5 + 4)
    roi_w = x2 - x1
    roi_h = y2 - y1
    if not ALIGNED:
        roi_w = tl.maximum(roi_w, 1.0)
        roi_h = tl.maximum(roi_h, 1.0)
    bin_h = roi_h / pooled_h
    bin_w = roi_w / pooled_w
    # ceil(bin) samples when adaptive, at most max_grid (MAX_ADAPTIVE_GRID) per axis.
    grid_h = tl.minimum(tl.maximum(tl.ceil(bin_h), 0.0), max_grid.to(tl.float32)).to(tl.int32)
    grid_w = tl.minimum(tl.maximum(tl.ceil(bin_w), 0.0), max_grid.to(tl.float32)).to(tl.int32)
    grid_h = tl.where(sampling_ratio > 0, sampling_ratio, grid_h)
    grid_w = tl.where(sampling_ratio > 0, sampling_ratio, grid_w)
    grid_h = tl.where(batch < 0, 0, grid_h)
    grid_w = tl.where(batch < 0, 0, grid_w)
    count = tl.maximum(grid_h.to(tl.float32) * grid_w.to(tl.float32), 1.0)
    y_start = y1 + (bins // pooled_w).to(tl.float32) * bin_h
    x_start = x1 + (bins % pooled_w).to(tl.float32) * bin_w
    return batch, y_start, x_start, bin_h, bin_w, grid_h, grid_w, count


@triton.jit
def _tile_offsets(k, c, bins, channels, num_bins):
    """Offsets [bins, C] of RoI k's tile in a [K, C, pooled_h, pooled_w] tensor."""
    return k * channels * num_bins + c[None, :].to(tl.int64) * num_bins + bins[:, None]


@triton.jit
def _roi_align_fwd_kernel(
    feat_ptr,
    box_ptr,
    out_ptr,
    channels,
    height,
    width,
    pooled_h,
    pooled_w,
    sampling_ratio,
    max_grid,
    ALIGNED: tl.constexpr,
    BLOCK_BINS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    k = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < channels
    bins = tl.arange(0, BLOCK_BINS)
    num_bins = pooled_h * pooled_w
    bin_ok = bins < num_bins
    batch, y_start, x_start, bin_h, bin_w, grid_h, grid_w, count = _roi_grid(
        box_ptr, k, bins, pooled_h, pooled_w, sampling_ratio, max_grid, ALIGNED
    )
    image = feat_ptr + tl.maximum(batch, 0) * height * width * channels
    acc = tl.full([BLOCK_BINS, BLOCK_C], 0.0, tl.float32)
    for iy in range(0, grid_h):
        y_lo, y_hi, wy_lo, wy_hi, y_in = _axis_taps(y_start, iy, bin_h, grid_h, height)
        for ix in range(0, grid_w):
            x_lo, x_hi, wx_lo, wx_hi, x_in = _axis_taps(x_start, ix, bin_w, grid_w, width)
            mask = (bin_ok & y_in & x_in)[:, None] & c_ok[None, :]
            o1, o2, o3, o4, w1, w2, w3, w4 = _bilinear_taps(
                y_lo, y_hi, wy_lo, wy_hi, x_lo, x_hi, wx_lo, wx_hi, width, channels, c
            )
            v1 = tl.load(image + o1, mask=mask, other=0.0)
            v2 = tl.load(image + o2, mask=mask, other=0.0)
            v3 = tl.load(image + o3, mask=mask, other=0.0)
            v4 = tl.load(image + o4, mask=mask, other=0.0)
            acc += (
                w1[:, None] * v1.to(tl.float32)
                + w2[:, None] * v2.to(tl.float32)
                + w3[:, None] * v3.to(tl.float32)
                + w4[:, None] * v4.to(tl.float32)
            )
    out = out_ptr + _tile_offsets(k, c, bins, channels, num_bins)
    tl.store(out, (acc / count).to(out_ptr.dtype.element_ty), mask=bin_ok[:, None] & c_ok[None, :])


@triton.jit
def _roi_align_bwd_kernel(
    grad_ptr,
    box_ptr,
    out_ptr,
    channels,
    height,
    width,
    pooled_h,
    pooled_w,
    sampling_ratio,
    max_grid,
    ALIGNED: tl.constexpr,
    BLOCK_BINS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    k = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < channels
    bins = tl.arange(0, BLOCK_BINS)
    num_bins = pooled_h * pooled_w
    bin_ok = bins < num_bins
    batch, y_start, x_start, bin_h, bin_w, grid_h, grid_w, count = _roi_grid(
        box_ptr, k, bins, pooled_h, pooled_w, sampling_ratio, max_grid, ALIGNED
    )
    tile_ok = bin_ok[:, None] & c_ok[None, :]
    g_ptr = grad_ptr + _tile_offsets(k, c, bins, channels, num_bins)
    g = tl.load(g_ptr, mask=tile_ok, other=0.0).to(tl.float32) / count
    image = out_ptr + tl.maximum(batch, 0) * height * width * channels
    for iy in range(0, grid_h):
        y_lo, y_hi, wy_lo, wy_hi, y_in = _axis_taps(y_start, iy, bin_h, grid_h, height)
        for ix in range(0, grid_w):
            x_lo, x_hi, wx_lo, wx_hi, x_in = _axis_taps(x_start, ix, bin_w, grid_w, width)
            mask = (y_in & x_in)[:, None] & tile_ok
            o1, o2, o3, o4, w1, w2, w3, w4 = _bilinear_taps(
                y_lo, y_hi, wy_lo, wy_hi, x_lo, x_hi, wx_lo, wx_hi, width, channels, c
            )
            tl.atomic_add(image + o1, w1[:, None] * g, mask=mask)
            tl.atomic_add(image + o2, w2[:, None] * g, mask=mask)
            tl.atomic_add(image + o3, w3[:, None] * g, mask=mask)
            tl.atomic_add(image + o4, w4[:, None] * g, mask=mask)


def _boxes(rois: torch.Tensor, spatial_scale: float, aligned: bool) -> torch.Tensor:
    """[K, 5] float32: batch index (-1 for a non-finite RoI), then the scaled corners."""
    corners = (rois[:, 1:].to(torch.float64) * spatial_scale - (0.5 if aligned else 0.0)).to(torch.float32)
    finite = torch.isfinite(corners).all(dim=1, keepdim=True)
    batch = torch.where(finite, rois[:, :1].to(torch.float32), -1.0)
    return torch.cat([batch, torch.where(finite, corners, 0.0)], dim=1).contiguous()


def _blocks(num_bins: int, channels: int) -> tuple[int, int]:
    block_bins = triton.next_power_of_2(num_bins)
    block_c = max(1, min(triton.next_power_of_2(channels), 128, max(4096 // block_bins, 8)))
    return block_bins, block_c


def roi_align_forward(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_h: int,
    pooled_w: int,
    sampling_ratio: int,
    aligned: bool,
    max_grid: int,
) -> torch.Tensor:
    """input [N, C, H, W], rois [K, 5] (validated) -> [K, C, pooled_h, pooled_w]."""
    _, channels, height, width = input.shape
    out = torch.empty((rois.shape[0], channels, pooled_h, pooled_w), dtype=input.dtype, device=input.device)
    if out.numel() == 0:
        return out
    feat = input.permute(0, 2, 3, 1).contiguous()
    block_bins, block_c = _blocks(pooled_h * pooled_w, channels)
    grid = (rois.shape[0], triton.cdiv(channels, block_c))
    _roi_align_fwd_kernel[grid](
        feat,
        _boxes(rois, spatial_scale, aligned),
        out,
        channels,
        height,
        width,
        pooled_h,
        pooled_w,
        sampling_ratio,
        max_grid,
        ALIGNED=aligned,
        BLOCK_BINS=block_bins,
        BLOCK_C=block_c,
        num_warps=4,
    )
    return out


def roi_align_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_h: int,
    pooled_w: int,
    input_shape: tuple[int, int, int, int],
    sampling_ratio: int,
    aligned: bool,
    max_grid: int,
) -> torch.Tensor:
    """grad [K, C, pooled_h, pooled_w] -> grad of input [N, C, H, W] (grad's dtype, contiguous)."""
    batch_size, channels, height, width = input_shape
    acc = torch.zeros((batch_size, height, width, channels), dtype=torch.float32, device=grad.device)
    if grad.numel() > 0 and acc.numel() > 0:
        block_bins, block_c = _blocks(pooled_h * pooled_w, channels)
        grid = (rois.shape[0], triton.cdiv(channels, block_c))
        _roi_align_bwd_kernel[grid](
            grad.contiguous(),
            _boxes(rois, spatial_scale, aligned),
            acc,
            channels,
            height,
            width,
            pooled_h,
            pooled_w,
            sampling_ratio,
            max_grid,
            ALIGNED=aligned,
            BLOCK_BINS=block_bins,
            BLOCK_C=block_c,
            num_warps=4,
        )
    out = torch.empty(input_shape, dtype=grad.dtype, device=grad.device)
    return out.copy_(acc.permute(0, 3, 1, 2))
