"""Reference RoICrop: explicit bilinear sampling on the affine grid of each RoI."""

import torch


def _axis_points(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
    """n points from lo to hi inclusive; the midpoint when n == 1 (what F.affine_grid
    with align_corners=True gives for a unit-size grid)."""
    if n == 1:
        return ((lo + hi) / 2).reshape(1)
    j = torch.arange(n, dtype=lo.dtype, device=lo.device)
    return lo + j * ((hi - lo) / (n - 1))


def _taps(coord: torch.Tensor, size: int):
    """Low/high neighbour indices (clamped into the map) and their weights, zeroed for
    neighbours outside [0, size - 1] and for non-finite coordinates. Coordinates are
    clamped to [-2, size + 1] first (both neighbours stay outside) so huge values cannot
    overflow the integer conversion."""
    finite = torch.isfinite(coord)
    safe = torch.where(finite, coord, torch.zeros_like(coord)).clamp(-2, size + 1)
    low = torch.floor(safe)
    frac = safe - low
    low = low.to(torch.int64)
    high = low + 1
    w_low = torch.where(finite & (low >= 0) & (low <= size - 1), 1 - frac, torch.zeros_like(frac))
    w_high = torch.where(finite & (high >= 0) & (high <= size - 1), frac, torch.zeros_like(frac))
    return low.clamp(0, max(size - 1, 0)), high.clamp(0, max(size - 1, 0)), w_low, w_high


def roi_crop(
    input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float
) -> torch.Tensor:
    """input [N, C, H, W], rois [K, 5] (batch index, x1, y1, x2, y2), both validated.

    Point (i, j) of RoI k sits at x = x1·s + j·(x2 − x1)·s/(ow − 1), y likewise (the
    centre when a size is 1); its value is the bilinear mix of its four neighbours, a
    neighbour outside the map contributing 0; a non-finite position gives 0. Boxes get
    no gradient.
    """
    oh, ow = output_size
    n, c, h, w = input.shape
    compute = torch.float64 if input.dtype == torch.float64 else torch.float32
    rois = rois.detach().to(compute)
    if rois.shape[0] == 0:
        # Sliced from input so that backward still reaches it (with zeros).
        return input.flatten()[:0].reshape(0, c, oh, ow)
    if h == 0 or w == 0:
        return input.new_zeros((rois.shape[0], c, oh, ow)) + input.sum()  # empty sum: 0, keeps the graph
    crops = []
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        x1, y1, x2, y2 = (rois[k, 1:] * spatial_scale).unbind()
        ys, xs = _axis_points(y1, y2, oh), _axis_points(x1, x2, ow)
        y_lo, y_hi, wy_lo, wy_hi = _taps(ys, h)
        x_lo, x_hi, wx_lo, wx_hi = _taps(xs, w)
        image = input[b].to(compute)
        crop = (
            image[:, y_lo[:, None], x_lo[None, :]] * (wy_lo[:, None] * wx_lo[None, :])
            + image[:, y_lo[:, None], x_hi[None, :]] * (wy_lo[:, None] * wx_hi[None, :])
            + image[:, y_hi[:, None], x_lo[None, :]] * (wy_hi[:, None] * wx_lo[None, :])
            + image[:, y_hi[:, None], x_hi[None, :]] * (wy_hi[:, None] * wx_hi[None, :])
        )
        crops.append(crop)
    return torch.stack(crops).to(input.dtype)
