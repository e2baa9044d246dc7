"""Reference deformable convolution (DCNv2): every sample gathered explicitly, then one
grouped matrix product. Gradients come from autograd.

torchvision's rule that a sample with y <= -1, y >= H, x <= -1 or x >= W reads 0 is not
applied separately: such a sample's corners are all off the map or carry weight 0, so it
reads 0 anyway (for finite inputs), and autograd then gives the coordinate gradient that
torchvision's backward gives on the borders y == -1 and x == -1 (the one-sided slope
into the map).
"""

import torch

# A coordinate whose four neighbours are all off any map.
_OFF_MAP = -10.0


def _columns(input, offset, mask, kernel_size, stride, padding, dilation):
    """[B, C, kh * kw, H_out * W_out]: mask * bilinear sample of every channel, tap, position."""
    b, c, h, w = input.shape
    kh, kw = kernel_size
    taps = kh * kw
    offset_groups = offset.shape[1] // (2 * taps)
    ho, wo = offset.shape[2:]
    dtype, device = input.dtype, input.device
    # Grid positions of each tap, integers first (exact), then the learned offsets.
    grid_y = (torch.arange(ho, device=device) * stride[0] - padding[0])[None, :, None] + (
        torch.arange(kh, device=device) * dilation[0]
    )[:, None, None]
    grid_x = (torch.arange(wo, device=device) * stride[1] - padding[1])[None, None, :] + (
        torch.arange(kw, device=device) * dilation[1]
    )[:, None, None]
    grid_y = grid_y[:, None].expand(kh, kw, ho, wo).reshape(taps, ho, wo).to(dtype)
    grid_x = grid_x[None].expand(kh, kw, ho, wo).reshape(taps, ho, wo).to(dtype)
    pairs = offset.reshape(b, offset_groups, taps, 2, ho, wo)
    y = grid_y + pairs[:, :, :, 0]
    x = grid_x + pairs[:, :, :, 1]
    # A non-finite coordinate reads nothing and gets no gradient: move it off the map.
    finite = torch.isfinite(y) & torch.isfinite(x)
    y = torch.where(finite, y, _OFF_MAP)
    x = torch.where(finite, x, _OFF_MAP)
    y0, x0 = torch.floor(y), torch.floor(x)
    ly, lx = y - y0, x - x0
    feats = input.reshape(b, offset_groups, c // offset_groups, h * w)
    samples = taps * ho * wo
    cols = 0
    for dy, dx, weight in (
        (0, 0, (1 - ly) * (1 - lx)),
        (0, 1, (1 - ly) * lx),
        (1, 0, ly * (1 - lx)),
        (1, 1, ly * lx),
    ):
        yy, xx = y0 + dy, x0 + dx
        valid = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        index = torch.where(valid, yy * w + xx, 0).to(torch.int64)
        index = index.view(b, offset_groups, 1, samples).expand(-1, -1, c // offset_groups, -1)
        values = torch.gather(feats, 3, index)
        cols = cols + torch.where(valid, weight, 0).view(b, offset_groups, 1, samples) * values
    if mask is not None:
        cols = cols * mask.reshape(b, offset_groups, 1, samples)
    return cols.reshape(b, c, taps, ho * wo)


def deform_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """Arguments as ``dets.ops.deform_conv2d`` takes them, already validated.

    Returns [B, C_out, H_out, W_out] in input's dtype (computed in float32 for half types).
    """
    out_dtype = input.dtype
    if input.dtype in (torch.float16, torch.bfloat16):
        input, weight, offset = input.float(), weight.float(), offset.float()
        mask = mask.float() if mask is not None else None
        bias = bias.float() if bias is not None else None
    b, c = input.shape[:2]
    c_out, c_per_group, kh, kw = weight.shape
    groups = c // c_per_group
    ho, wo = offset.shape[2:]
    cols = _columns(input, offset, mask, (kh, kw), stride, padding, dilation)
    cols = cols.reshape(b, groups, c_per_group * kh * kw, ho * wo)
    grouped = weight.reshape(groups, c_out // groups, c_per_group * kh * kw)
    out = torch.einsum("gok,bgkp->bgop", grouped, cols).reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out.to(out_dtype)
