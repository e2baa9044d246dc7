"""Reference RoIAlign: one RoI at a time, every sample gathered explicitly.

The sample coordinates are computed in the input's dtype (float32 for half types) with
torchvision's order of operations, so sample positions agree with the kernels exactly and
not only to rounding (which matters at the clamping and grid-size boundaries).
"""

import math

import torch

# Most adaptive sampling points per bin along one axis (sampling_ratio <= 0): the kernels
# (csrc/roi_align_common.h, kernels/roi_align.py) use the same cap; dets/ops/roi_align.py
# says why it departs from torchvision.
MAX_ADAPTIVE_GRID = 64


def _axis_taps(coords: torch.Tensor, size: int):
    """Bilinear taps of sample coordinates along an axis of `size` pixels.

    Returns (lo, hi, w_lo, w_hi, inside): samples outside [-1, size] are not inside
    (they contribute 0); inside ones are clamped to [0, size - 1].
    """
    inside = (coords >= -1) & (coords <= size)
    v = coords.clamp(min=0)
    lo = v.floor().to(torch.int64)
    at_edge = lo >= size - 1
    lo = torch.where(at_edge, size - 1, lo)
    hi = torch.where(at_edge, size - 1, lo + 1)
    v = torch.where(at_edge, lo.to(v.dtype), v)
    frac = v - lo.to(v.dtype)
    return lo, hi, 1 - frac, frac, inside


def _adaptive_grid(bin_size: float) -> int:
    """ceil(bin size) samples, at most MAX_ADAPTIVE_GRID (0 for a negative bin)."""
    return max(math.ceil(bin_size), 0) if bin_size < MAX_ADAPTIVE_GRID else MAX_ADAPTIVE_GRID


def _sample_coords(start, bin_size, pooled: int, grid: int) -> torch.Tensor:
    """[pooled * grid] coordinates: start + p * bin + (i + 0.5) * bin / grid."""
    dtype = bin_size.dtype
    p = torch.arange(pooled, dtype=dtype)
    i = torch.arange(grid, dtype=dtype)
    return ((start + p * bin_size)[:, None] + (i + 0.5) * bin_size / grid).reshape(-1)


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """input [N, C, H, W], rois [K, 5] (batch index, x1, y1, x2, y2), already validated.

    Returns [K, C, oh, ow] in input's dtype; differentiable in `input` (not in `rois`).
    """
    _, channels, height, width = input.shape
    oh, ow = output_size
    dtype = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    rois = rois.detach().cpu()
    # Empty RoIs still hang off `input` in the graph so that backward yields zero grads.
    nothing = input.reshape(-1)[:0]
    outputs = []
    for k in range(rois.shape[0]):
        batch = int(rois[k, 0])
        # Scaled in double and rounded once, like the kernels.
        corners = (rois[k, 1:].to(torch.float64) * spatial_scale - (0.5 if aligned else 0.0)).to(dtype)
        x1, y1, x2, y2 = corners
        roi_h, roi_w = y2 - y1, x2 - x1
        if not aligned:
            roi_h, roi_w = roi_h.clamp(min=1), roi_w.clamp(min=1)
        bin_h, bin_w = roi_h / oh, roi_w / ow
        if not bool(torch.isfinite(corners).all()):
            grid_h = grid_w = 0
        elif sampling_ratio > 0:
            grid_h = grid_w = sampling_ratio
        else:
            grid_h, grid_w = _adaptive_grid(bin_h.item()), _adaptive_grid(bin_w.item())
        if grid_h == 0 or grid_w == 0:
            outputs.append(input.new_zeros((channels, oh, ow)) + nothing.sum())
            continue
        y_lo, y_hi, wy_lo, wy_hi, y_in = _axis_taps(_sample_coords(y1, bin_h, oh, grid_h), height)
        x_lo, x_hi, wx_lo, wx_hi, x_in = _axis_taps(_sample_coords(x1, bin_w, ow, grid_w), width)
        image = input[batch].to(dtype).to("cpu")

        def tap(ys, xs, image=image):
            return image[:, ys[:, None], xs[None, :]]

        value = (
            (wy_lo[:, None] * wx_lo[None, :]) * tap(y_lo, x_lo)
            + (wy_lo[:, None] * wx_hi[None, :]) * tap(y_lo, x_hi)
            + (wy_hi[:, None] * wx_lo[None, :]) * tap(y_hi, x_lo)
            + (wy_hi[:, None] * wx_hi[None, :]) * tap(y_hi, x_hi)
        )
        value = torch.where(y_in[:, None] & x_in[None, :], value, 0)
        pooled = value.reshape(channels, oh, grid_h, ow, grid_w).sum(dim=(2, 4)) / (grid_h * grid_w)
        outputs.append(pooled.to(input.dtype).to(input.device))
    if not outputs:
        return nothing.reshape(0, channels, oh, ow)
    return torch.stack(outputs)
