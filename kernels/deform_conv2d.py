"""Deformable convolution (DCNv2) in Triton: the sampling passes (semantics:
dets/ops/deform_conv2d.py); the launchers do the GEMMs with torch.

Columns are [C_in * kh * kw, images * H_out * W_out] (row c * kh * kw + tap, as in
torchvision), so each weight group is one batched matrix product with the weight as it is.
  im2col: one program per (block of output positions, input channel), looping over the taps.
  col2im: the same mapping; adds each column-gradient entry to its four corners of the input
          gradient (float32 or float64 buffer) with atomics.
  coord:  one program per (block of positions, offset group, tap), looping over the group's
          channels; the offset and mask gradients of a sample need no atomics.
Sampling arithmetic runs in ACC (float64 for float64 tensors, else float32). The launchers
process as many images at once as keep the columns under COLUMN_BUDGET elements.
"""

import torch
import triton
import triton.language as tl

BLOCK = 128
COLUMN_BUDGET = 1 << 26


@triton.jit
def _sample(y, x, height, width):
    """Floor indices, fractions, corner validity and torchvision's inside rule of points (y, x)."""
    near = (y > -2.0) & (y < height + 1.0) & (x > -2.0) & (x < width + 1.0)
    ys = tl.where(near, y, 0.0)
    xs = tl.where(near, x, 0.0)
    y0f = tl.floor(ys)
    x0f = tl.floor(xs)
    ly = ys - y0f
    lx = xs - x0f
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    y_lo = near & (y0 >= 0) & (y0 < height)
    y_hi = near & (y0 + 1 >= 0) & (y0 + 1 < height)
    x_lo = near & (x0 >= 0) & (x0 < width)
    x_hi = near & (x0 + 1 >= 0) & (x0 + 1 < width)
    inside = (y > -1.0) & (y < height) & (x > -1.0) & (x < width)
    return y0, x0, ly, lx, y_lo, y_hi, x_lo, x_hi, inside


@triton.jit
def _point(
    off_ptr, image_og, k, p, oy, ox, plane, taps, kw, sh, sw, ph, pw, dh, dw, ok, ACC: tl.constexpr
):  # fmt: skip
    """Sample coordinates of tap k at positions p; image_og = image * offset_groups + group."""
    base = (image_og * 2 * taps + 2 * k).to(tl.int64) * plane + p
    dy = tl.load(off_ptr + base, mask=ok, other=0.0).to(ACC)
    dx = tl.load(off_ptr + base + plane, mask=ok, other=0.0).to(ACC)
    i = k // kw
    j = k % kw
    y = (oy * sh - ph + i * dh).to(ACC) + dy
    x = (ox * sw - pw + j * dw).to(ACC) + dx
    return y, x


@triton.jit
def _channel_positions(ptr, b0, n_pos, channels, height, width, out_w, plane, c_per_og, offset_groups, BLOCK):
    """This program's channel c and chunk positions idx: their validity, plane index, output
    row and column, image * offset_groups + group, and the channel's plane in `ptr` (NCHW)."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c = tl.program_id(1)
    b = b0 + idx // plane
    p = idx % plane
    image_og = b * offset_groups + c // c_per_og
    image = ptr + (b * channels + c).to(tl.int64) * height * width
    return idx, c, idx < n_pos, p, p // out_w, p % out_w, image_og, image


@triton.jit
def _im2col_kernel(
    in_ptr, off_ptr, mask_ptr, col_ptr, b0, n_pos, channels, height, width, out_w, plane, c_per_og,
    offset_groups, kw, taps, sh, sw, ph, pw, dh, dw,
    USE_MASK: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    idx, c, ok, p, oy, ox, image_og, image = _channel_positions(
        in_ptr, b0, n_pos, channels, height, width, out_w, plane, c_per_og, offset_groups, BLOCK
    )
    for k in range(0, taps):
        y, x = _point(off_ptr, image_og, k, p, oy, ox, plane, taps, kw, sh, sw, ph, pw, dh, dw, ok, ACC)
        y0, x0, ly, lx, y_lo, y_hi, x_lo, x_hi, inside = _sample(y, x, height, width)
        row = image + y0 * width + x0
        v00 = tl.load(row, mask=ok & y_lo & x_lo, other=0.0).to(ACC)
        v01 = tl.load(row + 1, mask=ok & y_lo & x_hi, other=0.0).to(ACC)
        v10 = tl.load(row + width, mask=ok & y_hi & x_lo, other=0.0).to(ACC)
        v11 = tl.load(row + width + 1, mask=ok & y_hi & x_hi, other=0.0).to(ACC)
        v = (1 - ly) * (1 - lx) * v00 + (1 - ly) * lx * v01 + ly * (1 - lx) * v10 + ly * lx * v11
        v = tl.where(inside, v, 0.0)
        if USE_MASK:
            v *= tl.load(mask_ptr + (image_og * taps + k).to(tl.int64) * plane + p, mask=ok, other=0.0).to(ACC)
        tl.store(col_ptr + (c * taps + k).to(tl.int64) * n_pos + idx, v.to(col_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _col2im_kernel(
    gcol_ptr, off_ptr, mask_ptr, grad_ptr, b0, n_pos, channels, height, width, out_w, plane, c_per_og,
    offset_groups, kw, taps, sh, sw, ph, pw, dh, dw,
    USE_MASK: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    idx, c, ok, p, oy, ox, image_og, image = _channel_positions(
        grad_ptr, b0, n_pos, channels, height, width, out_w, plane, c_per_og, offset_groups, BLOCK
    )
    for k in range(0, taps):
        y, x = _point(off_ptr, image_og, k, p, oy, ox, plane, taps, kw, sh, sw, ph, pw, dh, dw, ok, ACC)
        y0, x0, ly, lx, y_lo, y_hi, x_lo, x_hi, inside = _sample(y, x, height, width)
        g = tl.load(gcol_ptr + (c * taps + k).to(tl.int64) * n_pos + idx, mask=ok, other=0.0).to(ACC)
        if USE_MASK:
            g *= tl.load(mask_ptr + (image_og * taps + k).to(tl.int64) * plane + p, mask=ok, other=0.0).to(ACC)
        live = ok & inside
        row = image + y0 * width + x0
        tl.atomic_add(row, (1 - ly) * (1 - lx) * g, mask=live & y_lo & x_lo)
        tl.atomic_add(row + 1, (1 - ly) * lx * g, mask=live & y_lo & x_hi)
        tl.atomic_add(row + width, ly * (1 - lx) * g, mask=live & y_hi & x_lo)
        tl.atomic_add(row + width + 1, ly * lx * g, mask=live & y_hi & x_hi)


@triton.jit
def _coord_kernel(
    gcol_ptr, in_ptr, off_ptr, mask_ptr, goff_ptr, gmask_ptr, b0, n_pos, channels, height, width, out_w,
    plane, c_per_og, offset_groups, kw, taps, sh, sw, ph, pw, dh, dw,
    USE_MASK: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    o = tl.program_id(1) // taps
    k = tl.program_id(1) % taps
    ok = idx < n_pos
    b = b0 + idx // plane
    p = idx % plane
    oy = p // out_w
    ox = p % out_w
    image_og = b * offset_groups + o
    y, x = _point(off_ptr, image_og, k, p, oy, ox, plane, taps, kw, sh, sw, ph, pw, dh, dw, ok, ACC)
    y0, x0, ly, lx, y_lo, y_hi, x_lo, x_hi, inside = _sample(y, x, height, width)
    zero = tl.full([BLOCK], 0.0, ACC)
    s00, s01, s10, s11 = zero, zero, zero, zero
    for cc in range(0, c_per_og):
        c = o * c_per_og + cc
        g = tl.load(gcol_ptr + (c * taps + k).to(tl.int64) * n_pos + idx, mask=ok, other=0.0).to(ACC)
        row = in_ptr + (b * channels + c).to(tl.int64) * height * width + y0 * width + x0
        s00 += g * tl.load(row, mask=ok & y_lo & x_lo, other=0.0).to(ACC)
        s01 += g * tl.load(row + 1, mask=ok & y_lo & x_hi, other=0.0).to(ACC)
        s10 += g * tl.load(row + width, mask=ok & y_hi & x_lo, other=0.0).to(ACC)
        s11 += g * tl.load(row + width + 1, mask=ok & y_hi & x_hi, other=0.0).to(ACC)
    m = tl.full([BLOCK], 1.0, ACC)
    if USE_MASK:
        mask_at = (image_og * taps + k).to(tl.int64) * plane + p
        m = tl.load(mask_ptr + mask_at, mask=ok, other=0.0).to(ACC)
        value = (1 - ly) * (1 - lx) * s00 + (1 - ly) * lx * s01 + ly * (1 - lx) * s10 + ly * lx * s11
        tl.store(gmask_ptr + mask_at, tl.where(inside, value, 0.0).to(gmask_ptr.dtype.element_ty), mask=ok)
    gy = m * (lx * (s11 - s01) + (1 - lx) * (s10 - s00))
    gx = m * (ly * (s11 - s10) + (1 - ly) * (s01 - s00))
    at = (image_og * 2 * taps + 2 * k).to(tl.int64) * plane + p
    tl.store(goff_ptr + at, gy.to(goff_ptr.dtype.element_ty), mask=ok)
    tl.store(goff_ptr + at + plane, gx.to(goff_ptr.dtype.element_ty), mask=ok)


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


class _Geometry:
    """Sizes of one call and the scalar arguments every kernel takes after the pointers."""

    def __init__(self, input, weight, offset, mask, stride, padding, dilation, groups, offset_groups):
        self.batch, self.channels, self.height, self.width = input.shape
        self.out_channels, self.per_group, kh, self.kw = weight.shape
        self.taps = kh * self.kw
        self.out_h, self.out_w = offset.shape[2:]
        self.plane = self.out_h * self.out_w
        self.groups = groups
        self.offset_groups = offset_groups
        self.use_mask = mask is not None
        self.acc = _acc(input.dtype)
        self.tail = (
            self.channels, self.height, self.width, self.out_w, self.plane, self.channels // offset_groups,
            offset_groups, self.kw, self.taps, *stride, *padding, *dilation,
        )  # fmt: skip

    def chunks(self):
        """(first image, images) of each batch chunk."""
        step = max(1, COLUMN_BUDGET // (self.channels * self.taps * self.plane))
        return [(b0, min(step, self.batch - b0)) for b0 in range(0, self.batch, step)]

    def launch(self, kernel, grid_y, *pointers_and_start, n_pos):
        grid = (triton.cdiv(n_pos, BLOCK), grid_y)
        kernel[grid](
            *pointers_and_start, n_pos, *self.tail, USE_MASK=self.use_mask, ACC=self.acc, BLOCK=BLOCK, num_warps=4
        )


def _im2col(geo, input, offset, mask, b0, nb):
    cols = torch.empty((geo.channels * geo.taps, nb * geo.plane), dtype=input.dtype, device=input.device)
    geo.launch(_im2col_kernel, geo.channels, input, offset, mask, cols, b0, n_pos=nb * geo.plane)
    return cols


def _contiguous(mask, input):
    """mask made contiguous, or (None) a placeholder pointer the kernels never read."""
    return input if mask is None else mask.contiguous()


def deform_conv2d_forward(input, weight, offset, mask, bias, stride, padding, dilation, groups, offset_groups):
    """Validated tensors (mask may be None) -> [B, C_out, H_out, W_out] in input's dtype."""
    geo = _Geometry(input, weight, offset, mask, stride, padding, dilation, groups, offset_groups)
    out = torch.empty((geo.batch, geo.out_channels, geo.out_h, geo.out_w), dtype=input.dtype, device=input.device)
    input, offset, mask = input.contiguous(), offset.contiguous(), _contiguous(mask, input)
    grouped = weight.reshape(groups, geo.out_channels // groups, -1)
    for b0, nb in geo.chunks():
        cols = _im2col(geo, input, offset, mask, b0, nb).view(groups, -1, nb * geo.plane)
        res = torch.bmm(grouped, cols).view(geo.out_channels, nb, geo.plane).transpose(0, 1)
        out[b0 : b0 + nb] = res.reshape(nb, geo.out_channels, geo.out_h, geo.out_w)
    return out.add_(bias.view(1, -1, 1, 1))


def deform_conv2d_backward(grad, input, weight, offset, mask, stride, padding, dilation, groups, offset_groups):
    """Gradients of input, weight, offset and mask (None without a mask), all contiguous."""
    geo = _Geometry(input, weight, offset, mask, stride, padding, dilation, groups, offset_groups)
    acc_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    grad_input = torch.zeros(input.shape, dtype=acc_dtype, device=input.device)
    grad_weight = torch.zeros(
        (groups, geo.out_channels // groups, weight[0].numel()), dtype=acc_dtype, device=input.device
    )
    grad_offset = torch.empty(offset.shape, dtype=offset.dtype, device=offset.device)
    grad_mask = torch.empty(mask.shape, dtype=mask.dtype, device=mask.device) if mask is not None else None
    input, offset, mask = input.contiguous(), offset.contiguous(), _contiguous(mask, input)
    grouped = weight.reshape(groups, geo.out_channels // groups, -1)
    for b0, nb in geo.chunks():
        n_pos = nb * geo.plane
        g = grad[b0 : b0 + nb].reshape(nb, groups, -1, geo.plane).permute(1, 2, 0, 3).reshape(groups, -1, n_pos)
        cols = _im2col(geo, input, offset, mask, b0, nb).view(groups, -1, n_pos)
        grad_weight += torch.bmm(g, cols.transpose(1, 2)).to(acc_dtype)
        gcols = torch.bmm(grouped.transpose(1, 2), g).reshape(-1, n_pos).contiguous()
        geo.launch(_col2im_kernel, geo.channels, gcols, offset, mask, grad_input, b0, n_pos=n_pos)
        gmask = grad_mask if grad_mask is not None else grad_offset
        geo.launch(
            _coord_kernel, offset_groups * geo.taps, gcols, input, offset, mask, grad_offset, gmask, b0, n_pos=n_pos
        )
    return (
        grad_input.to(input.dtype),
        grad_weight.view(weight.shape).to(weight.dtype),
        grad_offset,
        grad_mask,
    )
